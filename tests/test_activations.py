"""tinytorch.core.activations: values against float64 references, stability, PyTorch when installed."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinytorch.core.activations import gelu, relu, sigmoid, softmax, tanh
from tinytorch.core.layers import GELU, Module, ReLU, Sigmoid, Softmax, Tanh
from tinytorch.core.tensor import Tensor

LARGE = st.floats(-1e4, 1e4, width=32)


def arrays(elements: st.SearchStrategy[float]) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=elements)


@given(arrays(LARGE), st.data())
def test_softmax_is_finite_and_sums_to_one_even_for_huge_logits(x: np.ndarray, data: st.DataObject) -> None:
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the stable version must not overflow at all
        y = softmax(Tensor(x), dim=dim)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.all(np.isfinite(y.data)) and np.all(y.data >= 0)
    np.testing.assert_allclose(y.data.sum(axis=dim), 1.0, rtol=1e-5)
    shifted = x.astype(np.float64) - x.max(axis=dim, keepdims=True)
    expected = np.exp(shifted) / np.exp(shifted).sum(axis=dim, keepdims=True)
    np.testing.assert_allclose(y.data, expected, atol=1e-6)


def test_softmax_of_1e4_logits() -> None:
    y = softmax(Tensor([[1e4, 0.0, -1e4]]))
    np.testing.assert_allclose(y.data, [[1.0, 0.0, 0.0]])


@given(arrays(st.floats(-30, 30, width=32)))
def test_elementwise_against_float64_references(x: np.ndarray) -> None:
    x64 = x.astype(np.float64)
    erf = np.vectorize(math.erf)
    cases = [
        (relu, np.maximum(x64, 0)),
        (sigmoid, 1 / (1 + np.exp(-x64))),
        (tanh, np.tanh(x64)),
        (gelu, 0.5 * x64 * (1 + erf(x64 / math.sqrt(2)))),
        (lambda t: gelu(t, approximate="tanh"),
         0.5 * x64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64**3)))),
    ]
    for function, expected in cases:
        y = function(Tensor(x))
        assert isinstance(y, Tensor) and y.dtype == np.float32 and y.shape == x.shape
        np.testing.assert_allclose(y.data, expected, rtol=1e-5, atol=1e-6)


def test_sigmoid_is_stable_at_the_extremes() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = sigmoid(Tensor([-1000.0, 0.0, 1000.0]))
    np.testing.assert_array_equal(y.data, [0.0, 0.5, 1.0])


def test_dtype_is_preserved() -> None:
    assert relu(Tensor([-1, 2])).dtype == np.int64
    assert sigmoid(Tensor(np.array([0.5]), dtype=np.float64)).dtype == np.float64


def test_bad_inputs() -> None:
    with pytest.raises(TypeError):
        relu([1.0, 2.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        gelu(Tensor([1.0]), approximate="fast")


def test_outputs_record_their_op_for_autograd() -> None:
    x = Tensor([[0.5, -1.0]], requires_grad=True)
    for function, op in ((relu, "relu"), (sigmoid, "sigmoid"), (tanh, "tanh"), (gelu, "gelu"), (softmax, "softmax")):
        y = function(x)
        assert y.grad_fn is not None and y.grad_fn.op.name == op and y.grad_fn.inputs[0] is x
        assert function(Tensor([[0.5, -1.0]])).grad_fn is None


def test_module_classes_follow_pytorch() -> None:
    x = Tensor([[-1.0, 0.0, 2.0]])
    assert repr(GELU()) == "GELU(approximate='none')" and repr(Softmax(dim=1)) == "Softmax(dim=1)"
    for module, function in ((ReLU(), relu), (Sigmoid(), sigmoid), (Tanh(), tanh), (GELU(), gelu)):
        np.testing.assert_array_equal(module(x).data, function(x).data)
        assert isinstance(module, Module) and list(module.parameters()) == []


def test_the_module_classes_keep_their_old_path() -> None:
    """The classes live in module 03 (they are Modules); module 02's path finds them there (PEP 562)."""
    import tinytorch.core.activations as activations
    from tinytorch.core.activations import ReLU as Relu02

    assert Relu02 is ReLU and activations.GELU is GELU and activations.Softmax is Softmax
    assert {"ReLU", "Sigmoid", "Tanh", "GELU", "Softmax"} <= set(dir(activations))
    assert "ReLU" not in activations.__all__, "star imports of module 02 never need module 03"
    with pytest.raises(AttributeError, match="Rlu"):
        activations.Rlu  # type: ignore[attr-defined]  # noqa: B018


def test_against_pytorch_when_installed() -> None:
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(0, 5, size=(4, 7)).astype(np.float32)
    t = torch.from_numpy(x)
    pairs = [
        (relu(Tensor(x)), torch.relu(t)),
        (sigmoid(Tensor(x)), torch.sigmoid(t)),
        (tanh(Tensor(x)), torch.tanh(t)),
        (gelu(Tensor(x)), torch.nn.functional.gelu(t)),
        (gelu(Tensor(x), approximate="tanh"), torch.nn.functional.gelu(t, approximate="tanh")),
        (softmax(Tensor(x), dim=1), torch.softmax(t, dim=1)),
    ]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-5, atol=1e-6)
