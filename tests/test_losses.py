"""tinytorch.core.losses: values against float64 references, every reduction, stability, errors, PyTorch."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinytorch.core.losses import (
    REDUCTIONS,
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    MSELoss,
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    log_softmax,
    mse_loss,
)
from tinytorch.core.tensor import Tensor

Array = np.ndarray
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=5)


def reduce64(per_element: Array, reduction: str) -> Array:
    if reduction == "mean":
        return np.asarray(per_element.mean())
    if reduction == "sum":
        return np.asarray(per_element.sum())
    return per_element


def floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    """float32 values in [lo, hi] (the bounds rounded to float32)."""
    return st.floats(float(np.float32(lo)), float(np.float32(hi)), allow_nan=False, allow_infinity=False, width=32)


# --------------------------------------------------------------------------- references


@settings(max_examples=40, deadline=None)
@given(st.data(), st.sampled_from(REDUCTIONS))
def test_mse_against_float64(data: st.DataObject, reduction: str) -> None:
    shape = data.draw(SHAPES)
    x = data.draw(hnp.arrays(np.float32, shape, elements=floats(-100, 100)))
    y = data.draw(hnp.arrays(np.float32, shape, elements=floats(-100, 100)))
    expected = reduce64((x.astype(np.float64) - y) ** 2, reduction)
    for loss in (mse_loss(Tensor(x), Tensor(y), reduction=reduction), MSELoss(reduction)(Tensor(x), Tensor(y))):
        assert loss.dtype == np.float32 and loss.shape == expected.shape
        np.testing.assert_allclose(loss.data, expected, rtol=1e-5, atol=1e-3)


@st.composite
def logits_and_targets(draw: st.DrawFn, magnitude: float = 30.0) -> tuple[Array, Array]:
    n, c = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    x = draw(hnp.arrays(np.float32, (n, c), elements=floats(-magnitude, magnitude)))
    t = np.asarray(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)), dtype=np.int64)
    return x, t


def cross_entropy64(x: Array, t: Array) -> Array:
    x64 = x.astype(np.float64)
    m = x64.max(axis=1, keepdims=True)
    logsumexp = (m + np.log(np.exp(x64 - m).sum(axis=1, keepdims=True)))[:, 0]
    out: Array = logsumexp - x64[np.arange(len(t)), t]
    return out


@settings(max_examples=40, deadline=None)
@given(logits_and_targets(), st.sampled_from(REDUCTIONS))
def test_cross_entropy_against_float64(pair: tuple[Array, Array], reduction: str) -> None:
    x, t = pair
    expected = reduce64(cross_entropy64(x, t), reduction)
    for loss in (cross_entropy(Tensor(x), Tensor(t), reduction), CrossEntropyLoss(reduction)(Tensor(x), Tensor(t))):
        assert loss.dtype == np.float32 and loss.shape == expected.shape
        np.testing.assert_allclose(loss.data, expected, rtol=1e-5, atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(logits_and_targets(magnitude=1e4), st.sampled_from(REDUCTIONS))
def test_cross_entropy_is_finite_for_huge_logits(pair: tuple[Array, Array], reduction: str) -> None:
    x, t = pair
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow, no log(0)
        loss = cross_entropy(Tensor(x), Tensor(t), reduction)
        logp = log_softmax(Tensor(x), dim=1)
    assert np.all(np.isfinite(loss.data)) and np.all(np.isfinite(logp.data)) and np.all(logp.data <= 0)
    np.testing.assert_allclose(loss.data, reduce64(cross_entropy64(x, t), reduction), rtol=1e-5, atol=1e-2)


def test_cross_entropy_of_1e4_logits() -> None:
    x = Tensor([[1e4, 0.0, -1e4], [1e4, 0.0, -1e4]])
    loss = cross_entropy(x, Tensor([0, 2]), reduction="none")
    np.testing.assert_allclose(loss.data, [0.0, 2e4])


@settings(max_examples=40, deadline=None)
@given(st.data(), st.sampled_from(REDUCTIONS))
def test_bce_against_float64(data: st.DataObject, reduction: str) -> None:
    shape = data.draw(SHAPES)
    p = data.draw(hnp.arrays(np.float32, shape, elements=floats(1e-4, 1 - 1e-4)))
    y = data.draw(hnp.arrays(np.float32, shape, elements=floats(0, 1)))
    p64, y64 = p.astype(np.float64), y.astype(np.float64)
    expected = reduce64(-(y64 * np.log(p64) + (1 - y64) * np.log(1 - p64)), reduction)
    for loss in (binary_cross_entropy(Tensor(p), Tensor(y), reduction), BCELoss(reduction)(Tensor(p), Tensor(y))):
        assert loss.dtype == np.float32 and loss.shape == expected.shape
        np.testing.assert_allclose(loss.data, expected, rtol=1e-4, atol=1e-5)


def test_bce_clamps_the_logs_at_minus_100() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = binary_cross_entropy(Tensor([0.0, 1.0, 0.0, 1.0]), Tensor([1.0, 0.0, 0.0, 1.0]), reduction="none")
    np.testing.assert_array_equal(loss.data, [100.0, 100.0, 0.0, 0.0])


@settings(max_examples=40, deadline=None)
@given(st.data(), st.sampled_from(REDUCTIONS))
def test_bce_with_logits_against_float64(data: st.DataObject, reduction: str) -> None:
    shape = data.draw(SHAPES)
    x = data.draw(hnp.arrays(np.float32, shape, elements=floats(-1e4, 1e4)))
    y = data.draw(hnp.arrays(np.float32, shape, elements=floats(0, 1)))
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    # log(1 + exp(x)) - x * y, written with logaddexp (exact for any x)
    expected = reduce64(np.logaddexp(0.0, x64) - x64 * y64, reduction)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        losses = [
            binary_cross_entropy_with_logits(Tensor(x), Tensor(y), reduction),
            BCEWithLogitsLoss(reduction)(Tensor(x), Tensor(y)),
        ]
    for loss in losses:
        assert loss.dtype == np.float32 and loss.shape == expected.shape
        assert np.all(np.isfinite(loss.data))
        np.testing.assert_allclose(loss.data, expected, rtol=1e-5, atol=1e-3)


def test_bce_with_logits_is_stable_for_large_logits() -> None:
    x = Tensor([1000.0, -1000.0, 1000.0, -1000.0, 50.0, -50.0])
    y = Tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = binary_cross_entropy_with_logits(x, y, reduction="none")
        x.requires_grad = True
        binary_cross_entropy_with_logits(x, y, reduction="sum").backward()
    np.testing.assert_allclose(loss.data, [1000.0, 1000.0, 0.0, 0.0, np.exp(-50.0), np.exp(-50.0)], rtol=1e-6)
    assert x.grad is not None
    # sigmoid(50) - 1 is -2e-22 but rounds to 0 in float32 (PyTorch's too): an absolute tolerance for it
    np.testing.assert_allclose(x.grad.data, [1.0, -1.0, 0.0, 0.0, -np.exp(-50.0), np.exp(-50.0)], rtol=1e-6, atol=1e-20)


def test_float64_inputs_stay_float64() -> None:
    x = Tensor(np.array([[0.2, 0.7], [0.1, 0.4]]), dtype=np.float64)
    y = Tensor(np.array([[0.0, 1.0], [1.0, 0.0]]), dtype=np.float64)
    functions: list[Callable[[Tensor, Tensor], Tensor]] = [
        mse_loss,
        binary_cross_entropy,
        binary_cross_entropy_with_logits,
    ]
    for function in functions:
        assert function(x, y).dtype == np.float64
    assert cross_entropy(x, Tensor([1, 0])).dtype == np.float64
    assert cross_entropy(Tensor([[1.0, 2.0]]), Tensor(np.array([1], dtype=np.int32))).dtype == np.float32


def test_reductions_shapes() -> None:
    x = Tensor(np.zeros((3, 4)))
    assert mse_loss(x, x, "none").shape == (3, 4)
    assert mse_loss(x, x, "sum").shape == () and mse_loss(x, x).shape == ()
    assert cross_entropy(x, Tensor([0, 1, 3]), "none").shape == (3,)
    assert cross_entropy(x, Tensor([0, 1, 3])).shape == ()


# --------------------------------------------------------------------------- errors


def test_bad_reduction() -> None:
    x = Tensor([[0.5, 0.5]])
    for function in (mse_loss, binary_cross_entropy, binary_cross_entropy_with_logits):
        with pytest.raises(ValueError, match="reduction"):
            function(x, x, reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy(x, Tensor([0]), reduction="Mean")
    for cls in (MSELoss, CrossEntropyLoss, BCELoss, BCEWithLogitsLoss):
        with pytest.raises(ValueError, match="reduction"):
            cls(reduction="batchmean")
        with pytest.raises(ValueError):
            cls(reduction=None)  # type: ignore[arg-type]


def test_cross_entropy_bad_targets() -> None:
    x = Tensor(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="float32"):
        cross_entropy(x, Tensor([0.0, 1.0]))
    with pytest.raises(IndexError, match="3"):
        cross_entropy(x, Tensor([0, 3]))
    with pytest.raises(IndexError, match="-1"):
        cross_entropy(x, Tensor([-1, 0]))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        cross_entropy(x, Tensor([0, 1, 2]))
    with pytest.raises(ValueError):
        cross_entropy(Tensor(np.zeros(3)), Tensor([0]))
    with pytest.raises(TypeError):
        cross_entropy(np.zeros((2, 3)), Tensor([0, 1]))  # type: ignore[arg-type]


def test_shape_and_range_errors() -> None:
    with pytest.raises(ValueError) as info:
        mse_loss(Tensor(np.zeros((3, 1))), Tensor(np.zeros(3)))
    assert "(3, 1)" in str(info.value) and "(3,)" in str(info.value)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binary_cross_entropy(Tensor([1.5, 0.5]), Tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binary_cross_entropy(Tensor([-0.1]), Tensor([1.0]))
    with pytest.raises(ValueError):
        binary_cross_entropy(Tensor([0.5, 0.5]), Tensor([1.0]))
    with pytest.raises(ValueError):
        binary_cross_entropy_with_logits(Tensor([0.5, 0.5]), Tensor([[1.0, 0.0]]))
    with pytest.raises(TypeError):
        mse_loss(Tensor([1.0]), [1.0])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- PyTorch, when installed


def test_against_pytorch_functional() -> None:
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3, size=(8, 5)).astype(np.float32)
    y = rng.normal(0, 3, size=(8, 5)).astype(np.float32)
    p = rng.uniform(0, 1, size=(8, 5)).astype(np.float32)
    p[0, :2] = [0.0, 1.0]  # the clamp at -100
    b = rng.integers(0, 2, size=(8, 5)).astype(np.float32)
    t = rng.integers(0, 5, size=8)
    tx, ty, tp, tb, tt = (torch.from_numpy(a) for a in (x, y, p, b, t))
    for reduction in REDUCTIONS:
        pairs = [
            (mse_loss(Tensor(x), Tensor(y), reduction), functional.mse_loss(tx, ty, reduction=reduction)),
            (cross_entropy(Tensor(x), Tensor(t), reduction), functional.cross_entropy(tx, tt, reduction=reduction)),
            (
                binary_cross_entropy(Tensor(p), Tensor(b), reduction),
                functional.binary_cross_entropy(tp, tb, reduction=reduction),
            ),
            (
                binary_cross_entropy_with_logits(Tensor(x * 100), Tensor(b), reduction),
                functional.binary_cross_entropy_with_logits(tx * 100, tb, reduction=reduction),
            ),
        ]
        for ours, theirs in pairs:
            assert ours.shape == tuple(theirs.shape)
            np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-5, atol=1e-5, err_msg=reduction)
    np.testing.assert_allclose(log_softmax(Tensor(x), dim=0).data, torch.log_softmax(tx, dim=0).numpy(), atol=1e-5)


def test_loss_gradients_against_pytorch() -> None:
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 4))
    t = rng.integers(0, 4, size=6)
    b = rng.integers(0, 2, size=(6, 4)).astype(np.float64)
    ours_functions: dict[str, Callable[[Tensor, str], Tensor]] = {
        "cross_entropy": lambda v, r: cross_entropy(v, Tensor(t), r),
        "bce_with_logits": lambda v, r: binary_cross_entropy_with_logits(v, Tensor(b, dtype=np.float64), r),
        "mse": lambda v, r: mse_loss(v, Tensor(b, dtype=np.float64), r),
    }
    torch_functions: dict[str, Callable[[Any, str], Any]] = {
        "cross_entropy": lambda v, r: functional.cross_entropy(v, torch.from_numpy(t), reduction=r),
        "bce_with_logits": lambda v, r: functional.binary_cross_entropy_with_logits(
            v, torch.from_numpy(b), reduction=r
        ),
        "mse": lambda v, r: functional.mse_loss(v, torch.from_numpy(b), reduction=r),
    }
    for reduction in REDUCTIONS:
        for name, ours_fn in ours_functions.items():
            mine = Tensor(x, dtype=np.float64, requires_grad=True)
            theirs = torch.tensor(x, requires_grad=True)
            ours_out = ours_fn(mine, reduction)
            weights = rng.uniform(0.5, 1.5, size=ours_out.shape)  # every output element counts
            (ours_out * Tensor(weights, dtype=np.float64)).sum().backward()
            (torch_functions[name](theirs, reduction) * torch.from_numpy(weights)).sum().backward()
            assert mine.grad is not None
            np.testing.assert_allclose(
                mine.grad.data, theirs.grad.numpy(), rtol=1e-7, atol=1e-10, err_msg=f"{name}, {reduction}"
            )
