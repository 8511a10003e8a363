"""Ops and their differentiation rules are tied by declared ``Op`` constants, checked here and on import.

An op is declared once where it is introduced (``SOFTMAX = Op("softmax", saves=("output", "dim"))`` in
module 02); ``record_op`` checks at record time that it saves exactly the declared values, module 06's
``RULES`` is keyed by the same constants and refuses (on import, and in ``register_rule``) a rule that
reads a value its op does not save. These tests close the loop over the whole package, without running
any forward or backward pass: every declared op has a rule, every rule reads only what its op saves, and
every ``record_op`` call in the package passes exactly the values its op declares.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import tinytorch
from tinytorch.core.autograd import RULES, Grads, register_rule, saved_reads
from tinytorch.core.tensor import POW, Node, Op, Tensor, record_op

PACKAGE = Path(tinytorch.__file__).parent


def all_modules() -> list[ModuleType]:
    """Every module of the package, imported (later modules may declare ops of their own)."""
    names = [info.name for info in pkgutil.walk_packages([str(PACKAGE)], prefix="tinytorch.")]
    return [importlib.import_module(name) for name in sorted(names)]


def declared_ops() -> dict[Op, str]:
    """Every ``Op`` bound to a module-level name in the package, with where it is declared."""
    found: dict[Op, str] = {}
    for module in all_modules():
        for name, value in vars(module).items():
            if isinstance(value, Op):
                found.setdefault(value, f"{module.__name__}.{name}")
    return found


def test_every_declared_op_has_a_rule() -> None:
    ops = declared_ops()
    assert len(ops) >= 28, f"expected the ops of modules 01, 02 and 04, found {sorted(o.name for o in ops)}"
    missing = sorted(where for op, where in ops.items() if op not in RULES)
    assert not missing, f"declared ops without a differentiation rule in RULES: {missing}"


def test_every_rule_belongs_to_a_declared_op() -> None:
    ops = declared_ops()
    stray = sorted(op.name for op in RULES if op not in ops)
    assert not stray, f"rules keyed by an op that no module declares: {stray}"


def test_op_names_are_unique() -> None:
    by_name: dict[str, list[str]] = {}
    for op, where in declared_ops().items():
        by_name.setdefault(op.name, []).append(where)
    clashes = {name: places for name, places in by_name.items() if len(places) > 1}
    assert not clashes, f"two different ops share a name: {clashes}"


RULE_OPS = sorted(RULES, key=lambda o: o.name)


@pytest.mark.parametrize("op", RULE_OPS, ids=[o.name for o in RULE_OPS])
def test_every_rule_reads_only_what_its_op_saves(op: Op) -> None:
    rule = RULES[op]
    reads = saved_reads(rule)
    assert reads is not None, f"the source of {rule.__name__} (rule of {op.name}) cannot be read"
    assert reads <= set(op.saves), f"{rule.__name__} reads {sorted(reads - set(op.saves))}; {op.name} saves {op.saves}"


def record_op_calls() -> list[tuple[str, ast.Call]]:
    calls = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "record_op":
                calls.append((str(path.relative_to(PACKAGE.parent)), node))
    return calls


def test_every_record_op_call_saves_what_its_op_declares() -> None:
    """Statically: ``record_op(CONST, ..., key=...)`` passes exactly ``CONST.saves`` (no forward pass needed)."""
    namespaces = {m.__file__: vars(m) for m in all_modules() if m.__file__}
    calls = record_op_calls()
    assert len(calls) >= 25, f"found only {len(calls)} record_op calls in the package"
    problems = []
    for where, call in calls:
        namespace = namespaces[str(PACKAGE.parent / where)]
        keys = {kw.arg or "**" for kw in call.keywords}
        first = call.args[0] if call.args else None
        op = namespace.get(first.id) if isinstance(first, ast.Name) else None
        if "**" in keys:
            problems.append(f"{where}:{call.lineno}: **saved cannot be checked")
        elif isinstance(op, Op):
            if keys != set(op.saves):
                problems.append(f"{where}:{call.lineno}: {op.name} saves {op.saves}, the call passes {sorted(keys)}")
        elif keys:  # an op passed in a variable (Tensor._binary): only ops that save nothing go that way
            problems.append(f"{where}:{call.lineno}: an op in a variable saves {sorted(keys)}; use its constant")
    assert not problems, "\n".join(problems)


def test_record_op_refuses_an_undeclared_or_misspelled_saved_value() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError, match=r"pow.*expnent"):
        record_op(POW, x.data**2, (x,), expnent=2)
    with pytest.raises(TypeError, match=r"pow.*missing \['exponent'\]"):
        record_op(POW, x.data**2, (x,))
    with pytest.raises(TypeError, match="Op constant"):
        record_op("pow", x.data**2, (x,), exponent=2)  # type: ignore[arg-type]
    # checked whether or not the result is recorded: the forward pass of an untracked tensor finds it too
    with pytest.raises(TypeError, match="expnent"):
        record_op(POW, np.ones(2), (Tensor([1.0, 2.0]),), expnent=2)


def test_op_declarations_are_validated() -> None:
    assert Op("softmax", saves=("output", "dim")) == Op("softmax", saves=("output", "dim"))  # re-running a cell
    with pytest.raises(ValueError):
        Op("log softmax")
    with pytest.raises(ValueError):
        Op("twice", saves=("dim", "dim"))
    with pytest.raises(ValueError):
        Op("not_a_tuple", saves="dim")  # type: ignore[arg-type]


def test_register_rule_refuses_a_rule_that_reads_an_undeclared_value() -> None:
    op = Op("test_ops_scale", saves=("factor",))

    def misspelled(g: np.ndarray, node: Node) -> Grads:
        return (g * node.saved["facter"],)

    def non_literal(g: np.ndarray, node: Node) -> Grads:
        key = "factor"
        return (g * node.saved[key],)

    before = dict(RULES)
    with pytest.raises(ValueError, match=r"test_ops_scale.*facter"):
        register_rule(op, misspelled)
    with pytest.raises(ValueError, match="non-literal"):
        register_rule(op, non_literal)
    with pytest.raises(TypeError, match="Op constant"):
        register_rule("test_ops_scale", misspelled)  # type: ignore[arg-type]
    assert before == RULES, "a refused rule is not registered"


def test_a_correct_rule_registers_and_runs() -> None:
    op = Op("test_ops_scale_ok", saves=("factor",))

    def scale_backward(g: np.ndarray, node: Node) -> Grads:
        return (g * node.saved.get("factor", 1.0),)

    try:
        register_rule(op, scale_backward)
        x = Tensor([1.0, 2.0], requires_grad=True)
        record_op(op, x.data * 3.0, (x,), factor=3.0).sum().backward()
        assert x.grad is not None
        np.testing.assert_array_equal(x.grad.data, [3.0, 3.0])
    finally:
        RULES.pop(op, None)


def test_an_op_declared_twice_differently_is_named_at_backward() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    redeclared = Op("pow")  # forgot saves=("exponent",): a different op from POW
    with pytest.raises(NotImplementedError, match=r"pow.*declare each op once"):
        record_op(redeclared, x.data**2, (x,)).sum().backward()
