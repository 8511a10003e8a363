"""``course bench training``: what tinytorch costs next to hand-written NumPy and PyTorch CPU, in one run.

Three measurements, all on this machine, one after the other, reported as times and ratios:

* one training step (forward, backward, SGD update) of an MLP 784-256-10 on a batch of 64, float32:
  tinytorch (``Sequential``/``Linear``/``ReLU``/``CrossEntropyLoss``/autograd/``SGD``), the same step
  written by hand in NumPy (the forward and backward formulas, updates in place), and PyTorch CPU when
  it is installed (``torch.nn`` and ``torch.optim.SGD``, its default thread count);
* the wall time tinytorch needs to train the 1986 milestone's MLP on the digits to 97% held-out accuracy;
* backward passes whose cost shows the graph is walked once: ``h = h + h`` thirty times (2**30 paths)
  and a chain of 10,000 ops.

Speed is measured here, never asserted in a test.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tinytorch.bench import pinned_threads
from tinytorch.core.autograd import no_grad
from tinytorch.core.dataloader import DataLoader, TensorDataset, load_digits
from tinytorch.core.layers import Linear, ReLU, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import SGD
from tinytorch.core.tensor import Tensor
from tinytorch.perf.profiling import measure_latency

BATCH, INPUTS, HIDDEN, CLASSES = 64, 784, 256, 10
LEARNING_RATE = 0.01
Array = npt.NDArray[np.float32]


def calls_per_block(step: Callable[[], object], block_seconds: float) -> int:
    """How many calls of ``step`` fill about ``block_seconds`` (after a short warm-up)."""
    for _ in range(3):
        step()
    started, calls = time.perf_counter(), 0
    while time.perf_counter() - started < block_seconds:
        step()
        calls += 1
    return max(1, calls)


def per_call(steps: dict[str, Callable[[], object]], rounds: int = 7, block_seconds: float = 0.25) -> dict[str, float]:
    """Median seconds per call of each step: ``rounds`` blocks of about ``block_seconds`` after a warm-up, timed
    by the course's one harness, module 14's ``measure_latency`` (``inner`` = the calls that fill a block).

    The steps are timed one after the other, not interleaved: NumPy's BLAS and PyTorch keep their own
    thread pools, whose threads spin for a while after each call, and alternating between the two makes
    each pay for the other's spinning (PyTorch's step measured 3x slower interleaved on this 2-core machine).
    """
    times: dict[str, float] = {}
    for name, step in steps.items():
        number = calls_per_block(step, block_seconds)
        times[name] = measure_latency(step, warmup=0, repeats=rounds, inner=number).median
    return times


@dataclass
class Batch:
    """One batch of MNIST-shaped data and the initial weights every implementation starts from."""

    x: Array
    y: npt.NDArray[np.int64]
    weights: list[Array] = field(default_factory=list)

    @classmethod
    def make(cls, seed: int = 0) -> Batch:
        rng = np.random.default_rng(seed)
        model = mlp(rng)
        return cls(
            rng.random((BATCH, INPUTS), dtype=np.float32),
            rng.integers(0, CLASSES, BATCH),
            [p.data.copy() for p in model.parameters()],
        )


def mlp(rng: np.random.Generator) -> Sequential:
    return Sequential(Linear(INPUTS, HIDDEN, generator=rng), ReLU(), Linear(HIDDEN, CLASSES, generator=rng))


def training_step(loss_of: Callable[[], Any], optimizer: Any) -> Callable[[], float]:
    """One optimizer step as a closure, the same for tinytorch and PyTorch: zero the gradients, compute the
    loss with ``loss_of()``, backward, step; returns the loss as a float."""

    def step() -> float:
        optimizer.zero_grad()
        loss = loss_of()
        loss.backward()
        optimizer.step()
        return float(loss.item())

    return step


def tinytorch_step(batch: Batch) -> Callable[[], float]:
    model = mlp(np.random.default_rng(0))
    model.load_state_dict(dict(zip(model.state_dict(), batch.weights, strict=True)))
    optimizer = SGD(model.parameters(), lr=LEARNING_RATE)
    loss_fn = CrossEntropyLoss()
    x, y = Tensor(batch.x), Tensor(batch.y)
    return training_step(lambda: loss_fn(model(x), y), optimizer)


def numpy_step(batch: Batch) -> Callable[[], float]:
    """The same step by hand: forward, the backward formulas of cross-entropy, ReLU and Linear, SGD in place."""
    w1, b1, w2, b2 = (w.copy() for w in batch.weights)
    x, y = batch.x, batch.y
    rows = np.arange(BATCH)

    def step() -> float:
        z1 = x @ w1.T + b1
        h = np.maximum(z1, 0)
        logits = h @ w2.T + b2
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, y]))
        dlogits = exp / total
        dlogits[rows, y] -= 1
        dlogits /= BATCH
        dh = dlogits @ w2
        dz1 = dh * (z1 > 0)
        for param, grad in ((w2, dlogits.T @ h), (b2, dlogits.sum(axis=0)), (w1, dz1.T @ x), (b1, dz1.sum(axis=0))):
            param -= LEARNING_RATE * grad
        return loss

    return step


def torch_step(batch: Batch) -> Callable[[], float]:
    import torch
    model = torch.nn.Sequential(torch.nn.Linear(INPUTS, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, CLASSES))
    with torch.no_grad():
        for param, value in zip(model.parameters(), batch.weights, strict=True):
            param.copy_(torch.from_numpy(value))
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = torch.from_numpy(batch.x), torch.from_numpy(batch.y)
    return training_step(lambda: loss_fn(model(x), y), optimizer)


def digits_to_target(target: float = 0.97, max_epochs: int = 40, seed: int = 0) -> tuple[float, int, float]:
    """Seconds (data loading included) for the 1986 milestone's MLP and schedule-free SGD to reach ``target``."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    images, labels = load_digits()
    order = rng.permutation(len(labels.data))
    cut = int(0.8 * len(order))
    x, y = images.data, labels.data
    mean, std = x[order[:cut]].mean(axis=0), x[order[:cut]].std(axis=0) + 1.0
    train = TensorDataset(Tensor((x[order[:cut]] - mean) / std), Tensor(y[order[:cut]]))
    x_test, y_test = Tensor((x[order[cut:]] - mean) / std), y[order[cut:]]
    model = Sequential(Linear(64, 128, generator=rng), ReLU(), Linear(128, 10, generator=rng))
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = CrossEntropyLoss()
    accuracy = 0.0
    for epoch in range(1, max_epochs + 1):
        for inputs, targets in DataLoader(train, batch_size=32, shuffle=True, generator=rng):
            optimizer.zero_grad()
            loss_fn(model(inputs), targets).backward()
            optimizer.step()
        with no_grad():
            accuracy = float(np.mean(model(x_test).data.argmax(axis=1) == y_test))
        if accuracy >= target:
            return time.perf_counter() - started, epoch, accuracy
    return time.perf_counter() - started, max_epochs, accuracy


def backward_seconds(build: Callable[[Tensor], Tensor]) -> float:
    x = Tensor(np.ones(4, dtype=np.float32), requires_grad=True)
    out = build(x).sum()
    started = time.perf_counter()
    out.backward()
    return time.perf_counter() - started


def doubling(x: Tensor) -> Tensor:
    h = x
    for _ in range(30):
        h = h + h
    return h


def chain(x: Tensor) -> Tensor:
    h = x
    for _ in range(10_000):
        h = h * 1.0001
    return h


def five_losses(step: Callable[[], float]) -> list[float]:
    return [step() for _ in range(5)]


def implementations() -> dict[str, Callable[[Batch], Callable[[], float]]]:
    """The step builders to compare: PyTorch's only when it is installed."""
    found: dict[str, Callable[[Batch], Callable[[], float]]] = {
        "tinytorch": tinytorch_step,
        "NumPy by hand": numpy_step,
    }
    if importlib.util.find_spec("torch") is not None:
        found["PyTorch CPU"] = torch_step
    return found


def bench_training(threads: int = 1) -> str:
    """Run the three measurements, NumPy's BLAS and PyTorch pinned to ``threads``, and return the report."""
    batch = Batch.make()
    makers = implementations()
    # The first losses must agree, or the timing would compare different work.
    losses = {name: five_losses(make(batch)) for name, make in makers.items()}
    with pinned_threads(threads) as note:
        times = per_call({name: make(batch) for name, make in makers.items()})
    reference = "PyTorch CPU" if "PyTorch CPU" in times else "NumPy by hand"
    lines = [f"One SGD training step, MLP {INPUTS}-{HIDDEN}-{CLASSES}, batch {BATCH}, float32 (threads: {note})"]
    lines += [
        f"  {name:<14} {seconds * 1e6:9.0f} us/step   {seconds / times[reference]:5.2f}x {reference}"
        for name, seconds in times.items()
    ]
    spread = max(float(np.ptp(values)) for values in zip(*losses.values(), strict=True))
    lines.append(f"  the first five losses agree across implementations within {spread:.1e}")
    seconds, epochs, accuracy = digits_to_target()
    lines.append(f"Digits MLP 64-128-10 to 97% held-out accuracy: {seconds:.2f} s ({epochs} epochs, {accuracy:.1%})")
    lines.append(f"Backward of h = h + h x30 (2**30 paths, 31 nodes): {backward_seconds(doubling) * 1e3:.2f} ms")
    lines.append(f"Backward of a 10,000-op chain: {backward_seconds(chain) * 1e3:.1f} ms")
    return "\n".join(lines)
