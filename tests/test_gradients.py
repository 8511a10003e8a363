"""Every differentiation rule of tinytorch.core.autograd against central differences written here.

Each case draws float64 inputs with hypothesis (broadcasting pairs included), builds a graph that uses the op
under test, back-propagates a weighted sum of the output (random non-zero weights, so every output element
counts) and compares the leaves' gradients with a float64 central-difference gradient of the same weighted sum.
The rules table itself is iterated: a rule without a case here fails ``test_every_rule_has_a_gradient_case``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from helpers import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinytorch.core.activations import gelu, relu, sigmoid, softmax, tanh
from tinytorch.core.autograd import RULES, gradcheck, no_grad, register_rule, topological_order
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
)
from tinytorch.core.tensor import Node, Op, Tensor, record_op

Array = np.ndarray
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
SHAPES_1D = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
PAIRS = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=3)


@dataclass(frozen=True)
class Case:
    """One gradient check: float64 inputs, the function of them, the finite-difference step and tolerances."""

    inputs: list[Array]
    fn: Callable[..., Tensor]
    eps: float = 1e-6
    rtol: float = 1e-5
    atol: float = 1e-6


Factory = Callable[[st.DataObject], Case]
CASES: dict[str, tuple[str, Factory]] = {}  # case name -> (the op it checks, how to draw it)


def case(op: str, name: str | None = None) -> Callable[[Factory], Factory]:
    def register(factory: Factory) -> Factory:
        key = name or op
        assert key not in CASES, key
        CASES[key] = (op, factory)
        return factory

    return register


# --------------------------------------------------------------------------- drawing inputs


def floats(data: st.DataObject, shape: tuple[int, ...], lo: float = -2.0, hi: float = 2.0) -> Array:
    elements = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    out: Array = data.draw(hnp.arrays(np.float64, shape, elements=elements))
    return out


def away_from_zero(data: st.DataObject, shape: tuple[int, ...], lo: float, hi: float) -> Array:
    """Values with ``lo <= |x| <= hi`` and a random sign (no kinks or poles within reach of the step)."""
    magnitude = floats(data, shape, lo, hi)
    sign = data.draw(hnp.arrays(np.bool_, shape))
    out: Array = np.where(sign, magnitude, -magnitude)
    return out


def distinct(data: st.DataObject, shape: tuple[int, ...]) -> Array:
    """Values at least 0.01 apart (no ties for max, even after a step of 1e-6)."""
    size = int(np.prod(shape))
    ints = data.draw(st.lists(st.integers(-300, 300), min_size=size, max_size=size, unique=True))
    out = np.array(ints, dtype=np.float64).reshape(shape)
    out /= 100.0  # in place: a 0-d array stays an array
    return out


def reduce_dims(data: st.DataObject, ndim: int) -> int | tuple[int, ...] | None:
    """None, one dim (maybe negative) or a tuple of distinct dims."""
    if ndim == 0:
        return None
    kind = data.draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        return None
    if kind == "int":
        return data.draw(st.integers(-ndim, ndim - 1))
    dims = data.draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(d - ndim if data.draw(st.booleans()) else d for d in dims)


# --------------------------------------------------------------------------- module 01: Tensor ops


def _binary(op: str, fn: Callable[[Tensor, Tensor], Tensor]) -> Factory:
    def factory(data: st.DataObject) -> Case:
        (sa, sb), _ = data.draw(PAIRS)
        a = floats(data, sa)
        b = away_from_zero(data, sb, 0.5, 3.0) if op == "div" else floats(data, sb)
        return Case([a, b], fn)

    return factory


for _op, _fn in (
    ("add", lambda a, b: a + b),
    ("sub", lambda a, b: a - b),
    ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / b),
):
    case(_op)(_binary(_op, _fn))


@case("add", "python_numbers_on_both_sides")
def _numbers(data: st.DataObject) -> Case:
    x = away_from_zero(data, data.draw(SHAPES), 0.5, 2.0)
    return Case([x], lambda t: (2.0 + t) * 3.0 - 1.5 / t + (4.0 - t) / 2.0 - t * 0.5)


@case("mul", "same_tensor_twice")
def _square(data: st.DataObject) -> Case:
    return Case([floats(data, data.draw(SHAPES))], lambda t: t * t + t)


@case("neg")
def _neg(data: st.DataObject) -> Case:
    return Case([floats(data, data.draw(SHAPES))], lambda t: -t)


@case("pow")
def _pow(data: st.DataObject) -> Case:
    exponent = data.draw(st.sampled_from([0, 1, 2, 3, -1, 0.5, 1.5, -2.5]))
    return Case([floats(data, data.draw(SHAPES), 0.5, 2.0)], lambda t: t**exponent)


@case("exp")
def _exp(data: st.DataObject) -> Case:
    return Case([floats(data, data.draw(SHAPES), -3.0, 3.0)], lambda t: t.exp())


@case("log")
def _log(data: st.DataObject) -> Case:
    return Case([floats(data, data.draw(SHAPES), 0.2, 5.0)], lambda t: t.log())


@case("matmul")
def _matmul(data: st.DataObject) -> Case:
    """1-D and 2-D operands, batches, and batch dims that broadcast (e.g. (2, 1, n, k) @ (3, k, m))."""
    n, k, m = (data.draw(st.integers(1, 4)) for _ in range(3))
    (batch_a, batch_b), _ = data.draw(
        hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, min_side=1, max_side=3)
    )
    a_vector, b_vector = data.draw(st.booleans()), data.draw(st.booleans())
    shape_a = (k,) if a_vector else (*batch_a, n, k)
    shape_b = (k,) if b_vector else (*batch_b, k, m)
    return Case([floats(data, shape_a), floats(data, shape_b)], lambda a, b: a @ b)


@case("matmul", "matmul_with_an_array_operand")
def _rmatmul(data: st.DataObject) -> Case:
    k, m = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    left = floats(data, (3, k))
    return Case([floats(data, (k, m))], lambda b: left @ b)  # ndarray @ Tensor -> Tensor.__rmatmul__


def _reduction(op: str) -> Factory:
    def factory(data: st.DataObject) -> Case:
        shape = data.draw(SHAPES)
        dim = reduce_dims(data, len(shape))
        keepdim = data.draw(st.booleans())
        x = distinct(data, shape) if op == "max" else floats(data, shape)
        return Case([x], lambda t: getattr(t, op)(dim=dim, keepdim=keepdim))

    return factory


for _op in ("sum", "mean", "max"):
    case(_op)(_reduction(_op))


@case("reshape")
def _reshape(data: st.DataObject) -> Case:
    shape = data.draw(SHAPES)
    how = data.draw(st.sampled_from(["reversed", "flat", "row", "extra", "view", "flatten"]))
    functions: dict[str, Callable[[Tensor], Tensor]] = {
        "reversed": lambda t: t.reshape(*shape[::-1]) if shape else t.reshape(1),
        "flat": lambda t: t.reshape(-1),
        "row": lambda t: t.reshape((1, -1)),
        "extra": lambda t: t.reshape((*shape, 1)),
        "view": lambda t: t.view(-1, 1),
        "flatten": lambda t: t.flatten(),
    }
    return Case([floats(data, shape)], functions[how])


@case("transpose")
def _transpose(data: st.DataObject) -> Case:
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=4, max_side=3))
    dim0 = data.draw(st.integers(-len(shape), len(shape) - 1))
    dim1 = data.draw(st.integers(-len(shape), len(shape) - 1))
    return Case([floats(data, shape)], lambda t: t.transpose(dim0, dim1))


@case("transpose", "T_property")
def _t(data: st.DataObject) -> Case:
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=2, max_side=4))
    return Case([floats(data, shape)], lambda t: t.T)


@case("permute")
def _permute(data: st.DataObject) -> Case:
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=4, max_side=3))
    order = data.draw(st.permutations(range(len(shape))))
    negative = data.draw(st.booleans())
    dims = tuple(d - len(shape) if negative else d for d in order)
    return Case([floats(data, shape)], lambda t: t.permute(*dims))


@case("squeeze")
def _squeeze(data: st.DataObject) -> Case:
    shape = tuple(data.draw(st.lists(st.sampled_from([1, 1, 2, 3]), min_size=0, max_size=4)))
    dim = None if not shape or data.draw(st.booleans()) else data.draw(st.integers(-len(shape), len(shape) - 1))
    return Case([floats(data, shape)], lambda t: t.squeeze(dim))


@case("unsqueeze")
def _unsqueeze(data: st.DataObject) -> Case:
    shape = data.draw(SHAPES)
    dim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    return Case([floats(data, shape)], lambda t: t.unsqueeze(dim))


@case("getitem")
def _getitem(data: st.DataObject) -> Case:
    """Basic and advanced indexing, including fancy indices that repeat (their gradients must accumulate)."""
    shape = data.draw(SHAPES_1D)
    n = shape[0]
    kind = data.draw(st.sampled_from(["int", "slice", "repeated", "tensor", "mask", "mixed", "pairs", "none"]))
    repeated = data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=6))
    index: Any
    if kind == "int":
        index = data.draw(st.integers(-n, n - 1))
    elif kind == "slice":
        start = data.draw(st.none() | st.integers(-n, n))
        step = data.draw(st.sampled_from([None, 1, 2, -1, -2]))
        index = (slice(start, None, step), Ellipsis)
    elif kind == "repeated":
        index = [*repeated, repeated[0]]  # at least one index twice
    elif kind == "tensor":
        index = Tensor(np.asarray([*repeated, repeated[-1]]))
    elif kind == "mask":
        index = data.draw(hnp.arrays(np.bool_, shape))
    elif kind == "mixed":
        index = (np.asarray(repeated), *([slice(None, None, -1)] if len(shape) > 1 else []))
    elif kind == "pairs" and len(shape) > 1:
        second = data.draw(st.lists(st.integers(0, shape[1] - 1), min_size=len(repeated), max_size=len(repeated)))
        index = (np.asarray(repeated), np.asarray(second))
    else:
        index = (None, Ellipsis, 0)
    return Case([floats(data, shape)], lambda t: t[index])


@case("clone")
def _clone(data: st.DataObject) -> Case:
    return Case([floats(data, data.draw(SHAPES))], lambda t: t.clone() * 2.0)


@case("clone", "contiguous_of_a_transpose")
def _contiguous(data: st.DataObject) -> Case:
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=2, min_side=2, max_side=4))
    return Case([floats(data, shape)], lambda t: t.T.contiguous())


@case("to")
def _to(data: st.DataObject) -> Case:
    """A cast to the other float width: float64 leaves go through float32 (hence the large step), float32
    leaves through float64; the gradient must come back in the leaf's own dtype."""

    def cast(t: Tensor) -> Tensor:
        return t.to(np.float32 if t.dtype == np.float64 else np.float64) * 1.0

    return Case([floats(data, data.draw(SHAPES))], cast, eps=1e-2, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- module 02: activations


@case("relu")
def _relu(data: st.DataObject) -> Case:
    return Case([away_from_zero(data, data.draw(SHAPES), 1e-3, 3.0)], relu)


@case("sigmoid")
def _sigmoid(data: st.DataObject) -> Case:
    return Case([floats(data, data.draw(SHAPES), -8.0, 8.0)], sigmoid)


@case("tanh")
def _tanh(data: st.DataObject) -> Case:
    return Case([floats(data, data.draw(SHAPES), -4.0, 4.0)], tanh)


@case("gelu", "gelu_exact")
def _gelu(data: st.DataObject) -> Case:
    # The forward uses an erf approximation with error < 1.5e-7 whose derivative is close to, not exactly,
    # the Gaussian density the rule uses: hence atol 1e-5.
    return Case([floats(data, data.draw(SHAPES), -5.0, 5.0)], gelu, atol=1e-5)


@case("gelu", "gelu_tanh")
def _gelu_tanh(data: st.DataObject) -> Case:
    return Case([floats(data, data.draw(SHAPES), -5.0, 5.0)], lambda t: gelu(t, approximate="tanh"))


def _along_dim(fn: Callable[..., Tensor]) -> Factory:
    def factory(data: st.DataObject) -> Case:
        shape = data.draw(SHAPES_1D)
        dim = data.draw(st.integers(-len(shape), len(shape) - 1))
        return Case([floats(data, shape, -5.0, 5.0)], lambda t: fn(t, dim=dim))

    return factory


case("softmax")(_along_dim(softmax))
case("log_softmax")(_along_dim(log_softmax))


# --------------------------------------------------------------------------- module 04: losses


@case("binary_cross_entropy")
def _bce(data: st.DataObject) -> Case:
    shape = data.draw(SHAPES)
    y = floats(data, shape, 0.0, 1.0)
    return Case([floats(data, shape, 0.05, 0.95)], lambda p: binary_cross_entropy(p, Tensor(y, dtype=p.dtype), "none"))


@case("binary_cross_entropy_with_logits")
def _bce_logits(data: st.DataObject) -> Case:
    shape = data.draw(SHAPES)
    y = floats(data, shape, 0.0, 1.0)
    return Case(
        [floats(data, shape, -6.0, 6.0)],
        lambda x: binary_cross_entropy_with_logits(x, Tensor(y, dtype=x.dtype), "none"),
    )


def _mse_loss(reduction: str) -> Factory:
    def factory(data: st.DataObject) -> Case:
        shape = data.draw(SHAPES)
        return Case([floats(data, shape), floats(data, shape)], lambda a, b: MSELoss(reduction)(a, b))

    return factory


def _cross_entropy_loss(reduction: str) -> Factory:
    def factory(data: st.DataObject) -> Case:
        n, c = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
        target = Tensor(np.asarray(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))))
        return Case([floats(data, (n, c), -4.0, 4.0)], lambda x: CrossEntropyLoss(reduction)(x, target))

    return factory


def _bce_loss(reduction: str, logits: bool) -> Factory:
    def factory(data: st.DataObject) -> Case:
        shape = data.draw(SHAPES)
        y = data.draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([0.0, 1.0])))
        loss = BCEWithLogitsLoss(reduction) if logits else BCELoss(reduction)
        x = floats(data, shape, -5.0, 5.0) if logits else floats(data, shape, 0.05, 0.95)
        return Case([x], lambda t: loss(t, Tensor(y, dtype=t.dtype)))

    return factory


for _reduction_name in REDUCTIONS:
    case("sub", f"MSELoss_{_reduction_name}")(_mse_loss(_reduction_name))
    case("log_softmax", f"CrossEntropyLoss_{_reduction_name}")(_cross_entropy_loss(_reduction_name))
    case("binary_cross_entropy", f"BCELoss_{_reduction_name}")(_bce_loss(_reduction_name, False))
    case("binary_cross_entropy_with_logits", f"BCEWithLogitsLoss_{_reduction_name}")(_bce_loss(_reduction_name, True))


@case("matmul", "two_layer_network_with_cross_entropy")
def _network(data: st.DataObject) -> Case:
    target = Tensor(np.asarray(data.draw(st.lists(st.integers(0, 2), min_size=4, max_size=4))))
    shapes = [(4, 5), (3, 5), (3,), (3, 3)]
    inputs = [floats(data, s, -1.0, 1.0) for s in shapes]

    def network(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor) -> Tensor:
        hidden = tanh(x @ w1.T + b1)
        return cross_entropy(hidden @ w2.T, target)

    return Case(inputs, network)


# --------------------------------------------------------------------------- the check


def graph_ops(out: Tensor) -> set[str]:
    return {t.grad_fn.op.name for t in topological_order(out) if t.grad_fn is not None}


def weighted_sum(out: Tensor, weights: Array) -> Tensor:
    return (out * Tensor(weights, dtype=out.dtype)).sum()


def central_differences(c: Case, weights: Array) -> list[Array]:
    """d/dx_i of sum(weights * fn(x)), every element by (f(x + eps) - f(x - eps)) / (2 eps), in float64."""

    def objective(arrays: list[Array]) -> float:
        with no_grad():
            out = c.fn(*(Tensor(a, dtype=np.float64) for a in arrays))
        return float(np.sum(np.asarray(out.data, dtype=np.float64) * weights))

    grads = []
    for i, x in enumerate(c.inputs):
        grad = np.zeros_like(x)
        for position in np.ndindex(x.shape):
            arrays = [np.array(a, dtype=np.float64) for a in c.inputs]
            arrays[i][position] = x[position] + c.eps
            up = objective(arrays)
            arrays[i][position] = x[position] - c.eps
            down = objective(arrays)
            grad[position] = (up - down) / (2 * c.eps)
        grads.append(grad)
    return grads


@settings(max_examples=25, deadline=None)
@given(data=st.data())
@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_central_differences(name: str, data: st.DataObject) -> None:
    op, factory = CASES[name]
    c = factory(data)
    leaves = [Tensor(x.copy(), dtype=np.float64, requires_grad=True) for x in c.inputs]
    out = c.fn(*leaves)
    assert op in graph_ops(out), f"case {name} was meant to use op {op!r}, its graph has {sorted(graph_ops(out))}"
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="weights seed"))
    weights = rng.uniform(0.5, 1.5, size=out.shape) * rng.choice([-1.0, 1.0], size=out.shape)
    weighted_sum(out, weights).backward()
    expected = central_differences(c, weights)
    for i, (leaf, numerical) in enumerate(zip(leaves, expected, strict=True)):
        assert leaf.grad is not None, f"{name}: input {i} got no gradient"
        assert leaf.grad.shape == leaf.shape and leaf.grad.dtype == np.float64
        scale = 1.0 + float(np.max(np.abs(numerical), initial=0.0))
        np.testing.assert_allclose(
            leaf.grad.data, numerical, rtol=c.rtol, atol=c.atol * scale, err_msg=f"{name}: gradient of input {i}"
        )

    # The same graph on float32 leaves: float32 gradients, close to the float64 ones.
    leaves32 = [Tensor(x.astype(np.float32), requires_grad=True) for x in c.inputs]
    out32 = c.fn(*leaves32)
    weighted_sum(out32, weights).backward()
    for i, (leaf32, leaf) in enumerate(zip(leaves32, leaves, strict=True)):
        assert leaf32.grad is not None and leaf.grad is not None
        assert leaf32.grad.dtype == np.float32, f"{name}: a float32 input got a {leaf32.grad.dtype} gradient"
        assert leaf32.grad.shape == leaf32.shape
        scale = 1.0 + float(np.max(np.abs(leaf.grad.data), initial=0.0))
        np.testing.assert_allclose(
            leaf32.grad.data, leaf.grad.data, rtol=2e-3, atol=2e-3 * scale, err_msg=f"{name} float32, input {i}"
        )


def test_every_rule_has_a_gradient_case() -> None:
    """Module 06's rules have a case here; a later module's rules are checked in that module's own test file.

    Every package module is imported first, so the answer does not depend on which tests ran before.
    """
    for path in sorted((ROOT / "tinytorch").rglob("*.py")):
        importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"))
    covered = {op for op, _ in CASES.values()}
    missing = []
    for op, rule in RULES.items():
        if rule.__module__ == "tinytorch.core.autograd":
            if op.name not in covered:
                missing.append(f"{op.name} (tests/test_gradients.py)")
            continue
        own_tests = ROOT / "tests" / f"test_{rule.__module__.rsplit('.', 1)[-1]}.py"
        text = own_tests.read_text(encoding="utf-8") if own_tests.is_file() else ""
        if op.name not in text or not ("gradcheck" in text or "central" in text):
            missing.append(f"{op.name} ({own_tests.relative_to(ROOT)})")
    assert not missing, f"rules without a central-difference check: {missing}"


# --------------------------------------------------------------------------- specific points


def test_max_splits_the_gradient_evenly_between_ties() -> None:
    x = Tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]], dtype=np.float64, requires_grad=True)
    x.max().backward()
    assert x.grad is not None
    np.testing.assert_array_equal(x.grad.data, [[0.0, 0.5, 0.5], [0.0, 0.0, 0.0]])
    x.grad = None
    x.max(dim=1).sum().backward()
    assert x.grad is not None
    np.testing.assert_array_equal(x.grad.data, [[0.0, 0.5, 0.5], [0.5, 0.0, 0.5]])


def test_repeated_fancy_indices_accumulate() -> None:
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[[0, 2, 0, 0]].sum().backward()
    assert x.grad is not None
    np.testing.assert_array_equal(x.grad.data, [3.0, 0.0, 1.0])


def test_float32_leaf_mixed_with_float64_keeps_its_dtype() -> None:
    a = Tensor([1.0, 2.0], requires_grad=True)  # float32
    b = Tensor([3.0, 4.0], dtype=np.float64, requires_grad=True)
    out = a * b
    assert out.dtype == np.float64
    out.sum().backward()
    assert a.grad is not None and b.grad is not None
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_array_equal(a.grad.data, [3.0, 4.0])
    np.testing.assert_array_equal(b.grad.data, [1.0, 2.0])


def test_broadcast_gradient_is_summed_back_to_the_input_shape() -> None:
    a = Tensor(np.ones((2, 1, 3)), requires_grad=True)
    b = Tensor(np.ones((4, 1)), requires_grad=True)
    (a + b).sum().backward()
    assert a.grad is not None and b.grad is not None
    np.testing.assert_array_equal(a.grad.data, np.full((2, 1, 3), 4.0))
    np.testing.assert_array_equal(b.grad.data, np.full((4, 1), 6.0))


# --------------------------------------------------------------------------- gradcheck itself


def test_gradcheck_accepts_correct_gradients() -> None:
    rng = np.random.default_rng(0)
    a = Tensor(rng.normal(size=(3, 4)), requires_grad=True)
    b = Tensor(rng.normal(size=(4,)), requires_grad=True)
    assert gradcheck(lambda x, y: softmax(x @ y.unsqueeze(1) * x, dim=0), (a, b)) is True
    assert gradcheck(lambda x: (x * x).sum(), a) is True
    with pytest.raises(ValueError):
        gradcheck(lambda x: x * 2.0, Tensor([1.0]))


def _recorded_square(x: Tensor, op: Op) -> Tensor:
    return record_op(op, x.data * x.data, (x,))


def test_gradcheck_rejects_a_wrong_rule_and_the_table_is_restored() -> None:
    before = dict(RULES)
    right, wrong = Op("test_gradients_square_right"), Op("test_gradients_square_wrong")

    def right_rule(g: Array, node: Node) -> tuple[Array, ...]:
        return (2 * g * node.inputs[0].data,)

    def wrong_rule(g: Array, node: Node) -> tuple[Array, ...]:
        return (g * node.inputs[0].data,)  # missing the factor 2

    x = Tensor([0.5, -1.5, 2.0], requires_grad=True)
    try:
        register_rule(right, right_rule)
        register_rule(wrong, wrong_rule)
        assert gradcheck(lambda t: _recorded_square(t, right), x) is True
        try:
            verdict = gradcheck(lambda t: _recorded_square(t, wrong), x)
        except AssertionError as err:
            assert "input 0" in str(err)
            verdict = False
        assert verdict is False, "gradcheck accepted a rule that is off by a factor 2"
    finally:
        RULES.pop(right, None)
        RULES.pop(wrong, None)
    assert before == RULES


# --------------------------------------------------------------------------- PyTorch, when installed


def _torch_grads(build: Callable[..., Any], arrays: list[Array]) -> list[Array]:
    torch = pytest.importorskip("torch")
    leaves = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    build(torch, *leaves).backward()
    return [leaf.grad.numpy() for leaf in leaves]


def _ours(build: Callable[..., Tensor], arrays: list[Array]) -> list[Array]:
    leaves = [Tensor(a, dtype=np.float64, requires_grad=True) for a in arrays]
    build(*leaves).backward()
    return [leaf.grad.data for leaf in leaves if leaf.grad is not None]


def test_composite_graphs_against_pytorch() -> None:
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(42)
    target = rng.integers(0, 3, size=6)
    index = [0, 2, 0, 3, 3]

    def mlp_ours(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor) -> Tensor:
        return cross_entropy(gelu(x @ w1.T + b1) @ w2.T, Tensor(target))

    def mlp_torch(t: Any, x: Any, w1: Any, b1: Any, w2: Any) -> Any:
        return functional.cross_entropy(functional.gelu(x @ w1.T + b1) @ w2.T, t.from_numpy(target))

    def broadcast_ours(a: Tensor, b: Tensor) -> Tensor:
        return ((a * b - b / (a.exp() + 1.0)).max(dim=-1) ** 2).mean() + (a.sum(dim=(0, 2), keepdim=True) * b).sum()

    def broadcast_torch(t: Any, a: Any, b: Any) -> Any:
        return (t.amax(a * b - b / (a.exp() + 1.0), dim=-1) ** 2).mean() + (a.sum(dim=(0, 2), keepdim=True) * b).sum()

    def indexing_ours(x: Tensor, y: Tensor) -> Tensor:
        picked = softmax(x[index], dim=1).log().transpose(0, 1).reshape(-1)
        return (picked * sigmoid(y).permute(1, 0).flatten()).sum() + binary_cross_entropy_with_logits(
            y, Tensor(np.full((4, 5), 0.3), dtype=np.float64)
        )

    def indexing_torch(t: Any, x: Any, y: Any) -> Any:
        picked = t.softmax(x[index], dim=1).log().transpose(0, 1).reshape(-1)
        return (picked * t.sigmoid(y).permute(1, 0).flatten()).sum() + functional.binary_cross_entropy_with_logits(
            y, t.full((4, 5), 0.3, dtype=t.float64)
        )

    graphs: list[tuple[Callable[..., Tensor], Callable[..., Any], list[tuple[int, ...]]]] = [
        (mlp_ours, mlp_torch, [(6, 4), (5, 4), (5,), (3, 5)]),
        (broadcast_ours, broadcast_torch, [(3, 1, 4), (2, 4)]),
        (indexing_ours, indexing_torch, [(4, 4), (4, 5)]),
    ]
    for ours_fn, torch_fn, shapes in graphs:
        arrays = [rng.normal(size=s) for s in shapes]
        for mine, theirs in zip(_ours(ours_fn, arrays), _torch_grads(torch_fn, arrays), strict=True):
            np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-6, err_msg=ours_fn.__name__)
