"""`course bench conv` runs and prints a row per measurement (speed is never asserted)."""

from __future__ import annotations

from course.bench_conv import bench_conv, lenet
from tinytorch.core.tensor import Tensor


def test_bench_conv_prints_every_measurement() -> None:
    table = bench_conv(threads=1, rounds=1)
    assert "conv2d 1->6 on 28x28 tinytorch" in table and "LeNet step tinytorch" in table and "threads:" in table


def test_lenet_shapes() -> None:
    import numpy as np

    assert lenet()(Tensor(np.zeros((2, 1, 28, 28), dtype=np.float32))).shape == (2, 10)
