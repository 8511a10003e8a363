"""Module 09: every rule (conv2d, max/avg pooling, batch norm) against central differences on hypothesis shapes,
strides and paddings; the forward passes against the seven loops; and against PyTorch when it is installed."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinytorch as tt
from tinytorch.core.autograd import gradcheck
from tinytorch.core.convolutions import (
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    MaxPool2d,
    avg_pool2d,
    conv2d,
    conv2d_loops,
    conv_output_size,
    max_pool2d,
)
from tinytorch.core.tensor import Tensor

Array = npt.NDArray[Any]


def f64(a: Array, requires_grad: bool = False) -> Tensor:
    return Tensor(a, dtype=np.float64, requires_grad=requires_grad)


@st.composite
def conv_case(draw: st.DrawFn) -> tuple[Array, Array, Array, tuple[int, int], tuple[int, int]]:
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h, w = draw(st.integers(max(1, kh - 2 * ph), 6)), draw(st.integers(max(1, kw - 2 * pw), 6))
    n, c_in, c_out = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    gen = np.random.default_rng(draw(st.integers(0, 2**16)))
    return (gen.standard_normal((n, c_in, h, w)), gen.standard_normal((c_out, c_in, kh, kw)),
            gen.standard_normal(c_out), (sh, sw), (ph, pw))


@settings(max_examples=25, deadline=None)
@given(conv_case())
def test_conv2d_matches_loops_and_central_differences(case: tuple[Array, Array, Array, Any, Any]) -> None:
    x, w, b, stride, padding = case
    y = conv2d(f64(x), f64(w), f64(b), stride, padding)
    np.testing.assert_allclose(y.data, conv2d_loops(x, w, b, stride, padding), rtol=1e-10, atol=1e-10)
    assert y.shape[2:] == (conv_output_size(x.shape[2], w.shape[2], stride[0], padding[0]),
                           conv_output_size(x.shape[3], w.shape[3], stride[1], padding[1]))
    assert gradcheck(lambda a, k, c: conv2d(a, k, c, stride, padding), (f64(x, True), f64(w, True), f64(b, True)))


@st.composite
def pool_case(draw: st.DrawFn) -> tuple[Array, tuple[int, int], tuple[int, int], tuple[int, int]]:
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h, w = draw(st.integers(kh, 6)), draw(st.integers(kw, 6))
    gen = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = gen.permutation(2 * 2 * h * w).reshape(2, 2, h, w) / 7.0   # distinct values: no ties
    return x, (kh, kw), (sh, sw), (ph, pw)


@settings(max_examples=25, deadline=None)
@given(pool_case())
def test_pooling_gradients(case: tuple[Array, Any, Any, Any]) -> None:
    x, k, s, p = case
    assert gradcheck(lambda a: max_pool2d(a, k, s, p), f64(x, True))
    assert gradcheck(lambda a: avg_pool2d(a, k, s, p), f64(x, True))


def test_max_pool_ties_go_to_the_first_element_in_row_major_order() -> None:
    x = f64(np.ones((1, 1, 3, 3)), True)
    max_pool2d(x, 2, stride=1).sum().backward()
    assert x.grad is not None
    np.testing.assert_array_equal(x.grad.data[0, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(0, 2**16), st.booleans())
def test_batch_norm_gradients(n: int, c: int, hw: int, seed: int, training: bool) -> None:
    if n * hw * hw < 2:
        n = 2
    gen = np.random.default_rng(seed)
    bn = BatchNorm2d(c).train(training)
    bn.running_mean[:] = gen.standard_normal(c)
    bn.running_var[:] = gen.uniform(0.5, 2.0, c)
    bn.weight.data[:] = gen.standard_normal(c)
    bn.bias.data[:] = gen.standard_normal(c)
    mix = f64(gen.standard_normal((n, c, hw, hw)))
    x = f64(gen.standard_normal((n, c, hw, hw)), True)
    assert gradcheck(lambda a: bn(a) * mix, x, atol=1e-4)


def test_batch_norm_parameter_gradients_and_running_stats() -> None:
    gen = np.random.default_rng(0)
    x = gen.standard_normal((4, 3, 2, 2))
    bn = BatchNorm2d(3, momentum=0.5)
    mix = gen.standard_normal(x.shape)
    (bn(f64(x)) * f64(mix)).sum().backward()
    x_hat = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(x.var(axis=(0, 2, 3), keepdims=True) + 1e-5)
    assert bn.weight.grad is not None and bn.bias.grad is not None
    np.testing.assert_allclose(bn.weight.grad.data, (mix * x_hat).sum(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(bn.bias.grad.data, mix.sum(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, 0.5 + 0.5 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-5)
    bn.eval()
    before = bn.running_mean.copy()
    bn(f64(x))
    np.testing.assert_array_equal(bn.running_mean, before)


def test_layers_shapes_and_namespaces() -> None:
    model = tt.nn.Sequential(tt.nn.Conv2d(1, 6, 5, padding=2), tt.nn.ReLU(), tt.nn.MaxPool2d(2),
                             tt.nn.Conv2d(6, 16, 5), tt.nn.AvgPool2d(2), tt.nn.Flatten(), tt.nn.Linear(400, 10))
    y = model(Tensor(np.zeros((2, 1, 28, 28), dtype=np.float32)))
    assert y.shape == (2, 10) and y.dtype == np.float32
    assert tt.nn.Conv2d is Conv2d and tt.nn.BatchNorm2d is BatchNorm2d and tt.nn.Flatten is Flatten
    assert tt.nn.MaxPool2d is MaxPool2d and tt.nn.AvgPool2d is AvgPool2d
    assert tt.nn.functional.conv2d is conv2d and tt.nn.functional.max_pool2d is max_pool2d
    assert Flatten(0)(Tensor(np.zeros((2, 3, 4)))).shape == (24,)


def test_against_torch() -> None:
    torch = pytest.importorskip("torch")
    gen = np.random.default_rng(1)
    x, w, b = gen.standard_normal((2, 3, 7, 6)), gen.standard_normal((4, 3, 3, 2)), gen.standard_normal(4)
    g = gen.standard_normal((2, 4, 3, 7))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    torch.nn.functional.conv2d(tx, tw, tb, stride=(2, 1), padding=(0, 1)).backward(torch.tensor(g))
    ox, ow, ob = f64(x, True), f64(w, True), f64(b, True)
    out = conv2d(ox, ow, ob, (2, 1), (0, 1))
    (out * f64(g)).sum().backward()
    for ours, theirs in ((ox, tx), (ow, tw), (ob, tb)):
        assert ours.grad is not None and theirs.grad is not None
        np.testing.assert_allclose(ours.grad.data, theirs.grad.numpy(), rtol=1e-10, atol=1e-10)
    t = torch.tensor(x)
    np.testing.assert_allclose(max_pool2d(f64(x), 3, 2, 1).data, torch.nn.functional.max_pool2d(t, 3, 2, 1).numpy())
    np.testing.assert_allclose(avg_pool2d(f64(x), 3, 2, 1).data, torch.nn.functional.avg_pool2d(t, 3, 2, 1).numpy())
