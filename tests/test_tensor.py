"""tinytorch.core.tensor against NumPy: unit tests and hypothesis properties."""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinytorch.core.tensor import Op, Tensor, is_grad_enabled, matmul_loops, record_op, set_grad_enabled, zeros

FLOATS = st.floats(-100, 100, width=32)
settings.register_profile("course", max_examples=60, deadline=None)
settings.load_profile("course")


def float_arrays(shape: Any) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float32, shape, elements=FLOATS)


# --- creation and dtypes -------------------------------------------------------------------------


def test_default_dtypes_follow_pytorch() -> None:
    assert Tensor([1.5, 2.0]).dtype == np.float32
    assert Tensor(np.zeros(3)).dtype == np.float32, "float64 data becomes float32 by default"
    assert Tensor([1, 2]).dtype == np.int64
    assert Tensor([True, False]).dtype == np.bool_
    assert Tensor(3.0).shape == ()


def test_int8_storage_is_real() -> None:
    t = Tensor(np.arange(1000), dtype=np.int8)
    assert t.dtype == np.int8 and t.nbytes == 1000 and t.element_size() == 1 and t.numel() == 1000


@pytest.mark.parametrize("bad", ["abc", None, [[1, 2], [3]], {"a": 1}, [object()]])
def test_non_numeric_data_raises_type_error(bad: Any) -> None:
    with pytest.raises(TypeError):
        Tensor(bad)


def test_requires_grad_needs_a_floating_dtype() -> None:
    with pytest.raises(TypeError):
        Tensor([1, 2], requires_grad=True)
    assert Tensor([1.0], requires_grad=True).requires_grad


# --- arithmetic with broadcasting ----------------------------------------------------------------

BINARY: list[tuple[str, Callable[[Any, Any], Any]]] = [
    ("add", operator.add),
    ("sub", operator.sub),
    ("mul", operator.mul),
    ("div", operator.truediv),
]


@pytest.mark.parametrize(("name", "op"), BINARY)
@given(data=st.data())
def test_binary_ops_broadcast_like_numpy(name: str, op: Callable[[Any, Any], Any], data: st.DataObject) -> None:
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4))
    a = data.draw(float_arrays(shapes.input_shapes[0]))
    b = data.draw(float_arrays(shapes.input_shapes[1]))
    if name == "div":
        b = np.where(np.abs(b) < 1e-3, np.float32(1), b)
    result = op(Tensor(a), Tensor(b))
    assert isinstance(result, Tensor) and result.dtype == np.float32
    np.testing.assert_allclose(result.data, op(a, b), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(op(a, Tensor(b)).data, op(a, b), rtol=1e-6, atol=1e-6)


@given(float_arrays(hnp.array_shapes(max_dims=3, max_side=4)), FLOATS)
def test_scalars_do_not_promote(a: np.ndarray, scalar: float) -> None:
    for result in (Tensor(a) + scalar, scalar * Tensor(a), scalar - Tensor(a), Tensor(a) ** 2, -Tensor(a)):
        assert result.dtype == np.float32


def test_shape_mismatch_names_op_and_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"add.*\(2, 3\).*\(4,\)"):
        Tensor(np.ones((2, 3))) + Tensor(np.ones(4))
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(4, 5\)"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))


def test_integer_true_division_gives_float32() -> None:
    assert (Tensor([1, 2]) / Tensor([2, 4])).dtype == np.float32


@given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5), st.data())
def test_matmul_and_loops_match_numpy(n: int, k: int, m: int, data: st.DataObject) -> None:
    a, b = data.draw(float_arrays((n, k))), data.draw(float_arrays((k, m)))
    expected = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose((Tensor(a) @ Tensor(b)).data, expected, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(matmul_loops(a, b), expected, rtol=1e-4, atol=1e-2)


# --- reductions, shapes, indexing ------------------------------------------------------------------


@given(data=st.data())
def test_reductions_match_numpy(data: st.DataObject) -> None:
    a = data.draw(float_arrays(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4)))
    dim = data.draw(st.one_of(st.none(), st.integers(-a.ndim, a.ndim - 1)))
    keepdim = data.draw(st.booleans())
    t = Tensor(a)
    for ours, theirs in ((t.sum, np.sum), (t.mean, np.mean), (t.max, np.max)):
        expected = theirs(a.astype(np.float64), axis=dim, keepdims=keepdim)
        got = ours(dim=dim, keepdim=keepdim)
        assert got.shape == np.shape(expected)
        np.testing.assert_allclose(got.data, expected, rtol=1e-5, atol=1e-3)
    assert np.array_equal(t.argmax(dim=dim, keepdim=keepdim).data, np.argmax(a, axis=dim, keepdims=keepdim))


@given(float_arrays(hnp.array_shapes(min_dims=2, max_dims=4, max_side=4)), st.data())
def test_transpose_permute_reshape_match_numpy(a: np.ndarray, data: st.DataObject) -> None:
    t = Tensor(a)
    d0, d1 = data.draw(st.integers(0, a.ndim - 1)), data.draw(st.integers(0, a.ndim - 1))
    assert np.array_equal(t.transpose(d0, d1).data, np.swapaxes(a, d0, d1))
    dims = data.draw(st.permutations(range(a.ndim)))
    assert np.array_equal(t.permute(*dims).data, np.transpose(a, dims))
    assert np.array_equal(t.reshape(-1).data, a.reshape(-1))
    assert np.shares_memory(t.reshape(a.size).data, a) and np.shares_memory(t.transpose(0, 1).data, a)


@given(float_arrays(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5)), st.data())
def test_basic_indexing_matches_numpy_and_is_a_view(a: np.ndarray, data: st.DataObject) -> None:
    index = data.draw(hnp.basic_indices(a.shape, allow_ellipsis=False))
    got = Tensor(a)[index]
    assert isinstance(got, Tensor)
    assert np.array_equal(got.data, a[index])


def test_views_and_copies() -> None:
    t = Tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
    assert np.shares_memory(t[1:].data, t.data), "basic slicing gives a view"
    assert not np.shares_memory(t[[0, 2]].data, t.data), "advanced indexing copies"
    assert not np.shares_memory(t.clone().data, t.data)
    with pytest.raises(RuntimeError):
        t.T.view(12)
    assert t.T.contiguous().is_contiguous()


# --- op recording for autograd -----------------------------------------------------------------


def test_ops_are_recorded_only_for_tracked_inputs() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = Tensor([3.0, 4.0])
    z = x * y + 1.0
    assert z.requires_grad and z.grad_fn is not None and z.grad_fn.op.name == "add"
    product = z.grad_fn.inputs[0]
    assert product.grad_fn is not None and product.grad_fn.op.name == "mul" and product.grad_fn.inputs[0] is x
    assert (y * 2.0).grad_fn is None and x.is_leaf and not z.is_leaf
    assert z.detach().grad_fn is None and np.shares_memory(z.detach().data, z.data)


def test_grad_mode_switch_stops_recording() -> None:
    x = Tensor([1.0], requires_grad=True)
    assert is_grad_enabled()
    set_grad_enabled(False)
    try:
        assert (x * 2).grad_fn is None
    finally:
        set_grad_enabled(True)
    assert (x * 2).grad_fn is not None


def test_record_op_is_the_one_way_to_make_tracked_outputs() -> None:
    x = zeros(2, requires_grad=True)
    out = record_op(Op("custom", saves=("note",)), x.data + 1, (x,), note="saved")
    assert out.grad_fn is not None and out.grad_fn.saved == {"note": "saved"} and out.requires_grad


def test_backward_without_module_06_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A learner who has exported 01-05 but not 06 gets a sentence, not a ModuleNotFoundError."""
    monkeypatch.setitem(sys.modules, "tinytorch.core.autograd", None)  # as if autograd.py were not exported
    x = Tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="needs module 06"):
        (x * 2).sum().backward()
    monkeypatch.undo()
    (x * 2).sum().backward()
    assert x.grad is not None and x.grad.data.tolist() == [2.0]
