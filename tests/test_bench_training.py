"""`course bench training` compares like with like: every implementation computes the same training steps."""

from __future__ import annotations

import numpy as np
import pytest

from course.bench_training import (
    Batch,
    chain,
    digits_to_target,
    doubling,
    five_losses,
    implementations,
    numpy_step,
    per_call,
    tinytorch_step,
)
from tinytorch.core.tensor import Tensor


def test_tinytorch_and_numpy_by_hand_take_the_same_steps() -> None:
    batch = Batch.make()
    ours, by_hand = five_losses(tinytorch_step(batch)), five_losses(numpy_step(batch))
    assert ours[-1] < ours[0], f"the loss should go down over five SGD steps: {ours}"
    np.testing.assert_allclose(ours, by_hand, rtol=1e-5)


def test_pytorch_takes_the_same_steps_when_installed() -> None:
    pytest.importorskip("torch")
    batch = Batch.make()
    losses = {name: five_losses(make(batch)) for name, make in implementations().items()}
    np.testing.assert_allclose(losses["PyTorch CPU"], losses["tinytorch"], rtol=1e-5)


def test_per_call_times_every_step() -> None:
    counter = {"a": 0, "b": 0}

    def step(name: str) -> None:
        counter[name] += 1

    times = per_call({"a": lambda: step("a"), "b": lambda: step("b")}, rounds=2, block_seconds=0.001)
    assert set(times) == {"a", "b"} and all(t > 0 for t in times.values())
    assert counter["a"] > 2 and counter["b"] > 2


def test_digits_mlp_reaches_97_percent() -> None:
    seconds, epochs, accuracy = digits_to_target()
    assert accuracy >= 0.97 and epochs <= 40 and seconds > 0


def test_the_backward_graphs_of_the_benchmark() -> None:
    x = Tensor(np.ones(4, dtype=np.float32), requires_grad=True)
    doubling(x).sum().backward()
    assert x.grad is not None and x.grad.data.tolist() == [2.0**30] * 4
    y = Tensor(np.ones(4, dtype=np.float32), requires_grad=True)
    chain(y).sum().backward()
    assert y.grad is not None
    np.testing.assert_allclose(y.grad.data, 1.0001**10_000, rtol=1e-3)
