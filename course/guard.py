"""Tamper checks for grading: a guard against tests that pass because the student changed them.

Student code runs in the same Python process as the tests that grade it, so it could replace
``numpy.testing.assert_allclose``, ``isinstance`` or IPython's exception handling and make every
test pass. Two defences, neither of which a student can see in the release:

* ``GuardCells`` (an nbgrader sanitize preprocessor) inserts, before any student code, a cell
  that records the functions and hooks the tests rely on, and starts every test cell with a
  call that fails the cell if any of them was replaced. The guard's name is random per run.
* ``suspicious_lines`` reads the student's cells for the tools such tampering needs (``builtins``,
  ``sys.settrace``, ``set_custom_exc``, ``ast_transformers``, ...), a quick report for a person.

In-process checks can never be perfect against a determined attacker. They are the last of four
layers: the code policy refuses such code before it runs (``course.policy``), every test cell must
prove it ran to its end (``course.execute``), and the sandbox bounds what the code can reach.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from nbconvert.preprocessors import Preprocessor
from nbformat.v4 import new_code_cell
from traitlets import Bool

from course.notebooks import is_solution, is_test

GUARD_MARK = "course_guard"

GUARD_TEMPLATE = '''\
def _install(name):
    import builtins, sys
    import numpy, numpy.testing
    from IPython import get_ipython
    shell = get_ipython()
    shell_type = type(shell)
    places = {{"builtins": builtins, "numpy": numpy, "numpy.testing": numpy.testing}}
    watched = {{}}
    for attr in ("isinstance", "issubclass", "len", "abs", "all", "any", "type", "float", "int", "bool",
                 "str", "repr", "round", "min", "max", "sum", "callable", "hasattr", "getattr", "range",
                 "zip", "sorted", "list", "tuple", "dict", "set", "print", "AssertionError", "Exception"):
        watched["builtins", attr] = getattr(builtins, attr)
    for attr in ("allclose", "array_equal", "isclose", "all", "any", "asarray", "array", "isfinite",
                 "isnan", "abs", "ndarray", "float32", "float64"):
        watched["numpy", attr] = getattr(numpy, attr)
    for attr in dir(numpy.testing):
        if attr.startswith("assert"):
            watched["numpy.testing", attr] = getattr(numpy.testing, attr)
    methods = ("showtraceback", "_showtraceback", "run_cell", "run_ast_nodes", "run_code", "CustomTB")
    on_class = {{attr: getattr(shell_type, attr, None) for attr in methods}}
    on_shell = {{attr: vars(shell).get(attr) for attr in methods}}
    excepthook = sys.excepthook
    def changed():
        found = [f"{{place}}.{{attr}}" for (place, attr), original in watched.items()
                 if getattr(places[place], attr, None) is not original]
        if sys.gettrace() is not None or sys.getprofile() is not None:
            found.append("a trace or profile hook")
        if sys.excepthook != excepthook or shell.custom_exceptions:
            found.append("exception handling")
        if type(shell) is not shell_type or any(
            getattr(shell_type, attr, None) is not on_class[attr] or vars(shell).get(attr) is not on_shell[attr]
            for attr in methods
        ):
            found.append("IPython's cell execution")
        if shell.ast_transformers or list(shell.input_transformers_post):
            found.append("code transformers")
        return found
    def guard():
        found = changed()
        if found:
            raise RuntimeError("the grading environment was changed by the notebook: " + ", ".join(found))
    setattr(builtins, name, guard)
_install("{name}")
del _install
'''

SUSPICIOUS = {
    r"\bbuiltins\b|__builtins__": "builtins",
    r"\bsettrace\b|\bsetprofile\b|\bexcepthook\b": "interpreter hooks",
    r"set_custom_exc|custom_exceptions|showtraceback|ast_transformers|input_transformers|run_cell": "IPython internals",
    r"np\.testing\.\w+\s*=|numpy\.testing\.\w+\s*=|(np|numpy)\.\w+\s*=(?!=)": "assignment into numpy",
    r"sys\.modules|importlib|\bctypes\b|\bgc\.get_": "module or memory tricks",
    GUARD_MARK: "the grading guard",
}


def guard_source(name: str) -> str:
    return GUARD_TEMPLATE.format(name=name)


class GuardCells(Preprocessor):
    """Insert the guard before all student code and a guard call at the top of every test cell."""

    enabled = Bool(True, help="nbconvert preprocessors are off by default; this one must always run").tag(
        config=True
    )

    def preprocess(self, nb: Any, resources: Any) -> tuple[Any, Any]:
        name = f"_{GUARD_MARK}_{secrets.token_hex(8)}"
        for cell in nb.cells:
            if is_test(cell):
                cell.source = f"{name}()  # {GUARD_MARK}\n{cell.source}"
        install = new_code_cell(guard_source(name))
        install.metadata = {GUARD_MARK: True}
        nb.cells.insert(0, install)
        return nb, resources


def is_guard_cell(cell: Any) -> bool:
    return bool(cell.get("metadata", {}).get(GUARD_MARK))


def without_guard_call(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if not line.endswith(f"# {GUARD_MARK}"))


def suspicious_lines(submitted: Any, release: Any) -> list[str]:
    """What the student wrote (lines not given in the release) that looks like tampering."""
    given = {line.strip() for cell in release.cells for line in cell.source.splitlines()}
    found: set[str] = set()
    for cell in submitted.cells:
        if cell.cell_type != "code" or not is_solution(cell):
            continue
        written = "\n".join(line for line in cell.source.splitlines() if line.strip() not in given)
        for pattern, what in SUSPICIOUS.items():
            if re.search(pattern, written):
                found.add(what)
    return sorted(found)
