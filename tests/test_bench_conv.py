"""`course bench conv` runs and prints a row per measurement (speed is never asserted)."""

from __future__ import annotations

from course.bench_conv import bench_conv, lenet
from tinytorch.core.tensor import Tensor


def test_bench_conv_prints_every_measurement() -> None:
    table = bench_conv(threads=1, rounds=1)
    assert "conv2d 32x3x32x32 -> 32, 3x3, pad 1 tinytorch" in table
    assert "conv2d 64x1x28x28 -> 6, 5x5, pad 2 tinytorch" in table
    assert "LeNet step tinytorch" in table and "threads: NumPy BLAS 1 thread(s)" in table


def test_lenet_shapes() -> None:
    import numpy as np

    assert lenet()(Tensor(np.zeros((2, 1, 28, 28), dtype=np.float32))).shape == (2, 10)
