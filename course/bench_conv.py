"""``course bench conv``: module 09's convolution next to PyTorch CPU, in one run.

Two measurements, on this machine, one after the other, with the same number of threads on both sides
(NumPy's BLAS pinned with ``threadpoolctl`` when it is installed, PyTorch with ``torch.set_num_threads``):

* ``conv2d`` forward on a 32x3x32x32 batch to 32 channels, 3x3, padding 1 (the issue's target: within 4x), and
  on LeNet's two convolutions (batch 64): tinytorch's im2col + batched ``matmul`` against
  ``torch.nn.functional.conv2d``;
* one LeNet-5 training step (forward, backward, SGD) on a batch of 64 (the target: within 3x).

Without PyTorch only tinytorch's times are printed. Speed is measured here, never asserted in a test.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

from course.bench_training import per_call, training_step
from tinytorch.bench import pinned_threads
from tinytorch.core.activations import ReLU
from tinytorch.core.convolutions import Conv2d, Flatten, MaxPool2d, conv2d
from tinytorch.core.layers import Linear, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import SGD
from tinytorch.core.tensor import Tensor

BATCH = 64
# (input shape, weight shape, padding): the 3x3 case, then LeNet's two convolutions
CONVS = [
    ((32, 3, 32, 32), (32, 3, 3, 3), 1),
    ((BATCH, 1, 28, 28), (6, 1, 5, 5), 2),
    ((BATCH, 6, 14, 14), (16, 6, 5, 5), 0),
]


def lenet() -> Sequential:
    return Sequential(Conv2d(1, 6, 5, padding=2), ReLU(), MaxPool2d(2), Conv2d(6, 16, 5), ReLU(), MaxPool2d(2),
                      Flatten(), Linear(400, 120), ReLU(), Linear(120, 84), ReLU(), Linear(84, 10))


def _ours(x: Tensor, w: Tensor, padding: int) -> Callable[[], object]:
    return lambda: conv2d(x, w, None, 1, padding)


def _theirs(x: np.ndarray[Any, Any], w: np.ndarray[Any, Any], padding: int) -> Callable[[], object]:
    import torch

    tx, tw = torch.from_numpy(x), torch.from_numpy(w)
    return lambda: torch.nn.functional.conv2d(tx, tw, None, 1, padding)


def _steps(seed: int = 0) -> dict[str, Callable[[], object]]:
    rng = np.random.default_rng(seed)
    steps: dict[str, Callable[[], object]] = {}
    has_torch = importlib.util.find_spec("torch") is not None
    for x_shape, w_shape, padding in CONVS:
        xa, wa = rng.standard_normal(x_shape).astype(np.float32), rng.standard_normal(w_shape).astype(np.float32)
        name = "conv2d {}x{}x{}x{} -> {}, {}x{}, pad {}".format(*x_shape, w_shape[0], *w_shape[2:], padding)
        steps[f"{name} tinytorch"] = _ours(Tensor(xa), Tensor(wa), padding)
        if has_torch:
            steps[f"{name} PyTorch"] = _theirs(xa, wa, padding)
    images = rng.random((BATCH, 1, 28, 28), dtype=np.float32)
    labels = rng.integers(0, 10, BATCH)
    model, loss_fn = lenet(), CrossEntropyLoss()
    opt = SGD(model.parameters(), lr=0.01)
    inputs, targets = Tensor(images), Tensor(labels)
    steps["LeNet step tinytorch"] = training_step(lambda: loss_fn(model(inputs), targets), opt)
    if has_torch:
        import torch

        nn = torch.nn
        tmodel = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                               nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(),
                               nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
        topt, tloss = torch.optim.SGD(tmodel.parameters(), lr=0.01), nn.CrossEntropyLoss()
        tx, ty = torch.from_numpy(images), torch.from_numpy(labels)
        steps["LeNet step PyTorch"] = training_step(lambda: tloss(tmodel(tx), ty), topt)
    return steps


def bench_conv(threads: int = 1, rounds: int = 5) -> str:
    """The table: milliseconds per call, and tinytorch / PyTorch where PyTorch is installed."""
    with pinned_threads(threads) as note:
        times: dict[str, Any] = per_call(_steps(), rounds=rounds, block_seconds=0.2)
    lines = [f"{'what':<48}{'ms per call':>14}{'tinytorch / PyTorch':>22}"]
    for name, seconds in times.items():
        ratio = ""
        if name.endswith("tinytorch") and name.replace("tinytorch", "PyTorch") in times:
            ratio = f"{seconds / times[name.replace('tinytorch', 'PyTorch')]:.1f}x"
        lines.append(f"{name:<48}{seconds * 1e3:>14.3f}{ratio:>22}")
    lines.append(f"threads: {note}")
    return "\n".join(lines)
