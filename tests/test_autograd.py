"""tinytorch.core.autograd: the backward pass, gradient accumulation, gradient modes, errors, graph size."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from tinytorch.core.autograd import (
    RULES,
    Grads,
    Rule,
    backward,
    enable_grad,
    no_grad,
    register_rule,
    rule_for,
    sum_to,
    topological_order,
)
from tinytorch.core.layers import Linear
from tinytorch.core.tensor import ADD, MATMUL, MUL, Node, Op, Tensor, is_grad_enabled, record_op


@contextmanager
def counting_rules() -> Iterator[dict[str, int]]:
    """Wrap every rule through the public registration API to count its applications; restore afterwards."""
    saved = dict(RULES)
    calls: dict[str, int] = {}

    def counting(op: Op, rule: Rule) -> Rule:
        def wrapped(g: np.ndarray, node: Node) -> Grads:
            calls[op.name] = calls.get(op.name, 0) + 1
            return rule(g, node)

        return wrapped

    try:
        for op, rule in saved.items():
            del RULES[op]
            register_rule(op, counting(op, rule))
        yield calls
    finally:
        RULES.clear()
        RULES.update(saved)


@pytest.fixture
def rule_calls() -> Iterator[dict[str, int]]:
    with counting_rules() as calls:
        yield calls


def test_counting_sees_each_rule_application(rule_calls: dict[str, int]) -> None:
    x = Tensor(1.0, requires_grad=True)
    (x * 2.0).backward()
    assert rule_calls == {"mul": 1}


def test_rules_are_restored() -> None:
    """After counting, the original rules are back, not the counting wrappers (checked here, not by file order)."""
    original = dict(RULES)
    with counting_rules() as calls:
        assert rule_for(MUL) is not original[MUL]
        (Tensor(1.0, requires_grad=True) * 2.0).backward()
    assert calls == {"mul": 1}
    assert original == RULES
    assert all(rule.__name__ != "wrapped" and rule.__module__.startswith("tinytorch.") for rule in RULES.values())
    assert rule_for(MUL) is RULES[MUL]


# --------------------------------------------------------------------------- gradients


def test_shared_subexpression() -> None:
    x = Tensor([2.0, -3.0, 0.5], requires_grad=True)
    y = x * x + x
    y.backward(Tensor([1.0, 1.0, 1.0]))
    assert x.grad is not None
    np.testing.assert_allclose(x.grad.data, 2 * x.data + 1)
    assert y.grad is None and y.grad_fn is not None, "intermediate tensors get no .grad"


def test_diamond_graph_visits_every_node_once(rule_calls: dict[str, int]) -> None:
    x = Tensor(3.0, requires_grad=True)
    a = x * 2.0
    b = a.exp()
    c = a * a
    (b + c).backward()
    assert x.grad is not None
    np.testing.assert_allclose(x.grad.item(), 2 * np.exp(6.0) + 8 * 3.0, rtol=1e-6)
    assert rule_calls == {"add": 1, "exp": 1, "mul": 2}
    order = topological_order(b + c)
    assert len(order) == len({id(t) for t in order}) == 5 and order[-1] is x


def test_gradients_accumulate_until_cleared() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    grad_array = None
    for step in range(1, 4):
        (x * 3.0).sum().backward()
        assert x.grad is not None
        np.testing.assert_array_equal(x.grad.data, [3.0 * step, 3.0 * step])
        if grad_array is None:
            grad_array = x.grad.data
        assert x.grad.data is grad_array, "accumulation adds into the existing gradient in place"
    x.grad = None
    (x * 3.0).sum().backward()
    assert x.grad is not None
    np.testing.assert_array_equal(x.grad.data, [3.0, 3.0])


def test_module_zero_grad() -> None:
    layer = Linear(3, 2, generator=np.random.default_rng(0))
    x = Tensor(np.ones((4, 3)))
    layer(x).sum().backward()
    layer(x).sum().backward()
    assert layer.bias is not None and layer.bias.grad is not None
    np.testing.assert_array_equal(layer.bias.grad.data, [8.0, 8.0])
    kept = layer.weight.grad
    layer.zero_grad(set_to_none=False)
    assert layer.weight.grad is kept and kept is not None and not kept.data.any()
    layer.zero_grad()
    assert layer.weight.grad is None and layer.bias.grad is None
    layer(x).sum().backward()
    np.testing.assert_array_equal(layer.bias.grad.data, [4.0, 4.0])


def test_backward_twice_on_the_same_graph() -> None:
    x = Tensor([1.0, -2.0], requires_grad=True)
    y = (x**3).sum()
    y.backward()
    y.backward()
    assert x.grad is not None
    np.testing.assert_allclose(x.grad.data, 2 * 3 * x.data**2)


def test_explicit_gradient_seed() -> None:
    x = Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    (x * x).backward(Tensor([[1.0, 0.0], [0.5, -1.0]]))
    assert x.grad is not None
    np.testing.assert_allclose(x.grad.data, [[2.0, 0.0], [3.0, -8.0]])
    assert x.grad.dtype == np.float32
    x.grad = None
    backward(x * x, Tensor([[1.0, 0.0], [0.5, -1.0]]))  # the function Tensor.backward calls
    assert x.grad is not None
    np.testing.assert_allclose(x.grad.data, [[2.0, 0.0], [3.0, -8.0]])


def test_leaf_gradient_has_leaf_dtype_and_shape() -> None:
    x = Tensor(np.ones((2, 3)), dtype=np.float64, requires_grad=True)
    w = Tensor(np.ones(3), requires_grad=True)  # float32, broadcast
    (x * w).sum().backward()
    assert x.grad is not None and w.grad is not None
    assert x.grad.dtype == np.float64 and x.grad.shape == (2, 3)
    assert w.grad.dtype == np.float32 and w.grad.shape == (3,)
    np.testing.assert_array_equal(w.grad.data, [2.0, 2.0, 2.0])


def test_no_gradient_for_inputs_that_do_not_require_it() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    c = Tensor([5.0, 6.0])
    (x * c).sum().backward()
    assert c.grad is None and x.grad is not None


def test_sum_to_reverses_broadcasting() -> None:
    np.testing.assert_array_equal(sum_to(np.ones((4, 2, 3)), (2, 1)).shape, (2, 1))
    np.testing.assert_array_equal(sum_to(np.ones((4, 2, 3)), (2, 1)), [[12.0], [12.0]])
    assert sum_to(np.ones((2, 3)), ()).shape == ()
    g = np.ones((2, 3))
    assert sum_to(g, (2, 3)) is g
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        sum_to(np.ones((2, 3)), (4,))


# --------------------------------------------------------------------------- gradient modes


def test_no_grad_context() -> None:
    x = Tensor([1.0], requires_grad=True)
    with no_grad():
        assert not is_grad_enabled()
        y = x * 2.0
    assert is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert (x * 2.0).requires_grad


def test_no_grad_as_decorator() -> None:
    @no_grad()
    def double(t: Tensor) -> Tensor:
        """Doubles."""
        assert not is_grad_enabled()
        return t * 2.0

    x = Tensor([1.0], requires_grad=True)
    y = double(x)
    assert not y.requires_grad and is_grad_enabled()
    assert double.__name__ == "double" and double.__doc__ == "Doubles."
    assert not double(x).requires_grad, "the decorator works on every call"


def test_no_grad_restores_the_mode_after_an_exception() -> None:
    with pytest.raises(ZeroDivisionError), no_grad():
        1 / 0  # noqa: B018
    assert is_grad_enabled()

    @no_grad()
    def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        fail()
    assert is_grad_enabled()
    with no_grad():
        with pytest.raises(ValueError), enable_grad():
            raise ValueError
        assert not is_grad_enabled()
    assert is_grad_enabled()


def test_enable_grad_inside_no_grad_and_nesting() -> None:
    x = Tensor([1.0], requires_grad=True)
    with no_grad():
        with enable_grad():
            y = x * 2.0
            with no_grad():
                z = x * 2.0
            assert is_grad_enabled()
        w = x * 2.0
    assert y.requires_grad and y.grad_fn is not None
    assert not z.requires_grad and not w.requires_grad
    context = no_grad()
    with context, context:  # the same object entered twice restores in order
        pass
    assert is_grad_enabled()


def test_grad_mode_is_per_thread() -> None:
    seen: list[bool] = []
    with no_grad():
        thread = threading.Thread(target=lambda: seen.append(is_grad_enabled()))
        thread.start()
        thread.join()
    assert seen == [True]


def test_detach() -> None:
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.grad_fn is None
    assert np.shares_memory(d.data, x.data)
    (x * d).sum().backward()  # d is a constant: the gradient is d, not 2x
    assert x.grad is not None
    np.testing.assert_array_equal(x.grad.data, x.data)


# --------------------------------------------------------------------------- errors


def test_non_scalar_backward_needs_a_gradient() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2.0).backward()
    with pytest.raises(RuntimeError, match=r"\(3,\).*\(2,\)"):
        (x * 2.0).backward(Tensor([1.0, 1.0, 1.0]))
    with pytest.raises(TypeError):
        (x * 2.0).backward(np.ones(2))  # type: ignore[arg-type]
    (x * 2.0)[0].backward()  # one element, any shape: fine
    Tensor([[3.0]], requires_grad=True).backward()


def test_backward_on_a_tensor_without_grad() -> None:
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(1.0).backward()
    x = Tensor(1.0, requires_grad=True)
    with no_grad():
        y = x * 2.0
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_op_without_a_rule_is_named() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = record_op(Op("test_autograd_mystery_op"), x.data * 2, (x,))
    with pytest.raises(NotImplementedError, match="test_autograd_mystery_op"):
        y.sum().backward()
    with pytest.raises(NotImplementedError, match="test_autograd_mystery_op"):
        rule_for(Op("test_autograd_mystery_op"))


def test_register_rule_refuses_to_replace_a_rule() -> None:
    with pytest.raises(ValueError, match="add"):
        register_rule(ADD, RULES[MUL])
    assert RULES[ADD] is not RULES[MUL]


def test_a_notebook_cell_run_again_replaces_its_own_rule() -> None:
    """The same function defined again (same module, same name) replaces the rule; a different one is refused."""
    op = Op("test_autograd_rerun", saves=("scale",))
    cell = "def scale_backward(g, node):\n    return (g * node.saved['scale'],)\n"
    first: dict[str, Any] = {"__name__": "cell"}
    again: dict[str, Any] = {"__name__": "cell"}
    exec(cell, first)
    exec(cell, again)
    try:
        register_rule(op, first["scale_backward"])
        register_rule(op, again["scale_backward"])
        assert RULES[op] is again["scale_backward"]
        with pytest.raises(ValueError, match="test_autograd_rerun"):
            register_rule(op, lambda g, node: (g,))
    finally:
        RULES.pop(op, None)


def test_a_rule_returning_the_wrong_number_of_gradients() -> None:
    op = Op("test_autograd_two_grads")
    try:
        register_rule(op, lambda g, node: (g, g))
        x = Tensor([1.0], requires_grad=True)
        with pytest.raises(RuntimeError, match=op.name):
            record_op(op, x.data, (x,)).backward()
    finally:
        RULES.pop(op, None)


# --------------------------------------------------------------------------- graph size


def test_ten_thousand_op_chain() -> None:
    x = Tensor(1.0, dtype=np.float64, requires_grad=True)
    h = x
    for _ in range(10_000):
        h = h * 1.0001
    h.backward()  # no RecursionError
    assert x.grad is not None
    np.testing.assert_allclose(x.grad.item(), 1.0001**10_000, rtol=1e-9)
    assert len(topological_order(h)) == 10_001


def test_doubling_thirty_times_applies_thirty_rules(rule_calls: dict[str, int]) -> None:
    """h = h + h thirty times is a graph of 30 nodes with 2**30 paths: backward must visit each node once."""
    x = Tensor(1.0, dtype=np.float64, requires_grad=True)
    h = x
    for _ in range(30):
        h = h + h
    h.backward()
    assert x.grad is not None
    assert x.grad.item() == 2.0**30
    assert rule_calls == {"add": 30}


def test_linear_weight_gradient_keeps_the_weights_layout() -> None:
    """Linear multiplies by the view W.T; its gradient must come back row-major like W (optimizers rely on it)."""
    layer = Linear(5, 3, generator=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    weights = np.random.default_rng(2).standard_normal((4, 3)).astype(np.float32)
    (layer(Tensor(x)) * Tensor(weights)).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.data.flags.c_contiguous
    np.testing.assert_allclose(layer.weight.grad.data, weights.T @ x, rtol=1e-5)


def test_matmul_rule_skips_an_input_that_needs_no_gradient() -> None:
    """The notebook says the matmul rule returns None for an input that does not require grad (the input batch of a
    layer) instead of computing a matmul nobody needs, and that a rule's result dtype is the engine's business."""
    x = Tensor(np.ones((4, 5), dtype=np.float32))
    w = Tensor(np.ones((5, 3), dtype=np.float32), requires_grad=True)
    out = x @ w
    assert out.grad_fn is not None
    grad_x, grad_w = rule_for(MATMUL)(np.ones((4, 3), dtype=np.float32), out.grad_fn)
    assert grad_x is None and grad_w is not None and grad_w.shape == (5, 3)


def test_engine_casts_rule_results_to_the_leaf_dtype() -> None:
    """A rule may return float64 for a float32 input (GELU computes in float64, np.zeros is float64): backward casts."""
    x = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    (x[[0, 0, 1]] * Tensor(np.ones(3, dtype=np.float64))).sum().backward()
    assert x.grad is not None and x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.data, [[2, 2, 2], [1, 1, 1]])
