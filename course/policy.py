"""The static code policy: what a student's cells may contain, checked before anything runs.

A student's code runs in the kernel that runs the tests, so whatever it can reach at run time
it can use to change what that kernel reports. This policy, applied by the grader to every cell
the student wrote (solution cells and any cell they added) before the notebook is executed,
keeps the tools for that out of the student's reach:

* imports only from an allow-list (``numpy``, ``math``, ``typing``, ``dataclasses``,
  ``functools``, ``itertools``, ``collections``, ``tinytorch`` and a few more; an instructor
  widens it per module in ``nbgrader_config.py``, see ``GradingPolicy``);
* no ``exec``/``eval``/``compile``/``__import__``/``globals``/``vars``/``open``/``breakpoint``,
  no IPython names (``get_ipython``, ``In``, ``Out``, ``_ih``, ...), no magics or shell escapes;
* no dunder games: dunder names only from a short list of data-model methods, no ``__class__``,
  ``__globals__``, ``__subclasses__``, ``__dict__`` except ``self.__dict__``; no frame, code or
  traceback attributes (``f_back``, ``gi_frame``, ``co_consts``, ...); no private attribute of an
  imported module or class (``np._core``); no process, interpreter or stream handles reached
  through an allowed module (``os.system``, ``os.fork``, ``np.ctypeslib``, ``sys``, ``stdout``);
* no rebinding of a name the tests read: builtins, IPython names, and names that locked cells
  bind (``np``, ``Tensor``); no ``global``/``nonlocal``; no assignment into an imported module
  (``np.testing.assert_allclose = ...``); ``setattr``/``getattr`` with dunder names; ``str.format``
  field traversal; ``np.load(..., allow_pickle=True)``.

A violation is reported with the cell, the line and the reason; the submission is then not run
at all and needs a person's attention. A cell that is not valid Python is not a violation: it
cannot run, and its tests fail as they would for any student.
"""

from __future__ import annotations

import ast
import builtins
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from traitlets import Bool, Dict, List, Unicode
from traitlets.config import Configurable

from course.notebooks import grade_id, grader_meta, is_solution, is_test

DEFAULT_IMPORTS = (
    "numpy", "math", "cmath", "typing", "typing_extensions", "dataclasses", "functools", "itertools",
    "collections", "tinytorch", "__future__", "abc", "enum", "numbers", "operator", "statistics", "random",
    "copy", "heapq", "bisect", "string", "re", "textwrap", "warnings", "contextlib",
)  # fmt: skip
IPYTHON_NAMES = {"get_ipython", "In", "Out", "exit", "quit", "display", "_ih", "_oh", "_dh", "__", "___"}
HISTORY_NAME = re.compile(r"_i+\d*|_\d+")
FORBIDDEN_NAMES = {
    "exec", "eval", "compile", "__import__", "globals", "locals", "vars", "open", "breakpoint",
    "help", "memoryview", "__builtins__", "__loader__", "__spec__", "copyright", "credits", "license",
} | IPYTHON_NAMES  # fmt: skip
# Data-model methods a class may define and call; every other dunder attribute is refused.
ALLOWED_DUNDERS = {
    "__init__", "__name__", "__qualname__", "__doc__", "__repr__", "__str__", "__format__", "__hash__",
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__len__", "__iter__", "__next__",
    "__getitem__", "__setitem__", "__delitem__", "__contains__", "__call__", "__enter__", "__exit__",
    "__setattr__", "__delattr__", "__array__", "__array_interface__", "__array_priority__", "__neg__", "__pos__",
    "__abs__", "__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__isub__", "__mul__", "__rmul__",
    "__imul__", "__truediv__", "__rtruediv__", "__itruediv__", "__floordiv__", "__mod__", "__pow__", "__rpow__",
    "__matmul__", "__rmatmul__", "__imatmul__", "__float__", "__int__", "__index__", "__post_init__",
    "__array_ufunc__", "__array_function__", "__reversed__", "__copy__", "__deepcopy__",
    "__slots__", "__all__", "__version__",
}  # fmt: skip
# Attributes that reach frames, code, streams, processes or the interpreter, whatever object holds them.
FORBIDDEN_ATTRIBUTES = {
    "f_back", "f_globals", "f_locals", "f_code", "f_builtins", "f_trace", "tb_frame", "tb_next", "gi_frame",
    "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code", "co_consts", "co_code", "co_names",
    "system", "popen", "fork", "forkpty", "execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp",
    "execvpe", "spawnv", "spawnve", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnvp", "spawnvpe",
    "posix_spawn", "posix_spawnp", "kill", "killpg", "abort", "dup", "dup2", "environ", "environb", "putenv",
    "unsetenv", "setsid", "chroot", "sys", "os", "builtins", "stdout", "stderr", "stdin",
    "displayhook", "excepthook", "settrace", "setprofile", "addaudithook", "audit", "ctypes", "ctypeslib",
    "f2py", "extbuild", "memmap", "open_memmap", "subprocess", "importlib", "ipython",
}  # fmt: skip
POLICY_URL = "README.md, 'What a submission may contain'"


class GradingPolicy(Configurable):
    """What student code may import, set in ``nbgrader_config.py``; the course tool reads it there.

    ``c.GradingPolicy.extra_imports = ["fractions"]`` widens the allow-list for every module,
    ``c.GradingPolicy.module_imports = {"05_dataloader": ["gzip", "struct"]}`` for one module.
    ``c.GradingPolicy.enabled = False`` turns the policy off (only for code you trust).
    """

    enabled = Bool(True, help="check student cells against the policy before running them").tag(config=True)
    imports = List(Unicode(), list(DEFAULT_IMPORTS), help="top-level packages student code may import").tag(config=True)
    extra_imports = List(Unicode(), [], help="more packages student code may import, in every module").tag(config=True)
    module_imports = Dict(
        value_trait=List(Unicode()), default_value={}, help="more packages per module: {'05_dataloader': ['gzip']}"
    ).tag(config=True)

    def allowed_imports(self, module: str) -> frozenset[str]:
        return frozenset([*self.imports, *self.extra_imports, *self.module_imports.get(module, [])])


def load_policy(course_root: Path) -> GradingPolicy:
    """The policy as ``nbgrader_config.py`` in ``course_root`` sets it (the defaults without one)."""
    from traitlets.config.loader import PyFileConfigLoader

    config_file = course_root / "nbgrader_config.py"
    if not config_file.is_file():
        return GradingPolicy()
    loader = PyFileConfigLoader(config_file.name, path=str(course_root))
    return GradingPolicy(config=loader.load_config())


@dataclass(frozen=True)
class Violation:
    cell: str  # the grade_id, or "cell N" for a cell without one
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.cell}, line {self.line}: {self.reason}"


def _top_level_bindings(tree: ast.Module) -> set[str]:
    """Names a cell binds in the notebook's namespace (not inside functions or classes)."""
    names: set[str] = set()

    def targets(node: ast.AST) -> Iterable[str]:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store | ast.Del):
                yield sub.id
            elif isinstance(sub, ast.Starred) and isinstance(sub.value, ast.Name):
                yield sub.value.id

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
            elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.For | ast.AsyncFor | ast.Delete):
                for target in getattr(node, "targets", None) or [getattr(node, "target", None)]:
                    if target is not None:
                        names.update(targets(target))
            elif isinstance(node, ast.With | ast.AsyncWith):
                for item in node.items:
                    if item.optional_vars is not None:
                        names.update(targets(item.optional_vars))
            for field in ("body", "orelse", "finalbody", "handlers"):  # if/for/while/try at the top level
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    inner = getattr(node, field, None)
                    if isinstance(inner, list):
                        visit([n for n in inner if isinstance(n, ast.stmt)])
            if isinstance(node, ast.ExceptHandler) and node.name:
                names.add(node.name)
        for sub in ast.walk(ast.Module(body=statements, type_ignores=[])):
            if isinstance(sub, ast.NamedExpr) and isinstance(sub.target, ast.Name):
                names.add(sub.target.id)

    visit(tree.body)
    return names


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):
        return None


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and len(name) > 4


class _Checker(ast.NodeVisitor):
    def __init__(self, allowed_imports: frozenset[str], protected: set[str], imported: set[str]) -> None:
        self.allowed_imports = allowed_imports
        self.protected = protected
        self.imported = set(imported)  # names bound to modules or imported objects
        self.found: list[tuple[int, str]] = []

    def flag(self, node: ast.AST, reason: str) -> None:
        self.found.append((getattr(node, "lineno", 1), reason))

    def _import(self, node: ast.AST, module: str) -> None:
        top = module.split(".")[0]
        if top not in self.allowed_imports:
            self.flag(node, f"import of {module!r} is not allowed (allowed: {', '.join(sorted(self.allowed_imports))})")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._import(node, alias.name)
            self.imported.add((alias.asname or alias.name).split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.flag(node, "relative imports are not allowed")
        self._import(node, node.module or "")
        for alias in node.names:
            if alias.name == "*":
                self.flag(node, "'import *' is not allowed (it rebinds names the tests read)")
            elif alias.name.startswith("_"):
                self.flag(node, f"importing the private name {alias.name!r} is not allowed")
            self.imported.add(alias.asname or alias.name)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_NAMES:
            self.flag(node, f"{node.id!r} is not allowed in student code")
        elif _is_dunder(node.id) and node.id not in ALLOWED_DUNDERS:
            self.flag(node, f"the name {node.id!r} is not allowed")
        elif HISTORY_NAME.fullmatch(node.id):
            self.flag(node, f"{node.id!r} is IPython's input or output history")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr, root = node.attr, _root_name(node.value)
        if _is_dunder(attr):
            if attr == "__dict__" and root == "self" and isinstance(node.value, ast.Name):
                pass
            elif attr not in ALLOWED_DUNDERS or attr == "__dict__":
                self.flag(node, f"the attribute {attr!r} is not allowed")
        elif attr in FORBIDDEN_ATTRIBUTES:
            self.flag(node, f"the attribute {attr!r} is not allowed in student code")
        elif attr.startswith("_") and root in self.imported:
            self.flag(node, f"the private attribute {attr!r} of the imported {root!r} is not allowed")
        if isinstance(node.ctx, ast.Store | ast.Del) and root in self.imported:
            self.flag(node, f"assigning into the imported {root!r} is not allowed")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name in {"setattr", "delattr", "getattr", "hasattr"} and isinstance(func, ast.Name):
            literal = _literal(node.args[1]) if len(node.args) > 1 else None
            if literal is not None and literal.startswith("_") and name != "hasattr":
                self.flag(node, f"{name} of the private attribute {literal!r} is not allowed")
            elif literal is None and name in {"getattr", "hasattr"}:
                self.flag(node, f"{name} needs an attribute name written as a string")
            elif literal is None and not (
                node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "self"
            ):
                self.flag(node, f"{name} with a computed name is only allowed on self")
        if name in {"format", "format_map"} and isinstance(func, ast.Attribute):
            template = _literal(func.value)
            fields = [] if template is None else [f for _, f, _, _ in string.Formatter().parse(template) if f]
            if template is None or any("." in f or "[" in f for f in fields):
                self.flag(
                    node, "str.format with a computed template or attribute lookups is not allowed (use an f-string)"
                )
        if name == "load" or name == "loadtxt" or name == "genfromtxt":
            for keyword in node.keywords:
                value = keyword.value
                if keyword.arg == "allow_pickle" and not (isinstance(value, ast.Constant) and value.value is False):
                    self.flag(node, "allow_pickle must be False (unpickling runs arbitrary code)")
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.flag(node, "'global' is not allowed in student code")

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.flag(node, "'nonlocal' is not allowed in student code")


def _ipython_syntax(source: str) -> bool:
    """Whether the cell uses IPython's own syntax: magics, shell escapes, ``?`` help."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        transformed: str = TransformerManager().transform_cell(source)  # type: ignore[no-untyped-call]
    except Exception:  # a cell IPython cannot even read runs nothing
        return False
    return transformed.rstrip() != source.rstrip() and "get_ipython()" in transformed


@dataclass(frozen=True)
class NotebookRules:
    """What the release says about a module's notebook: the cells nbgrader restores and the names tests read."""

    restored: frozenset[str]  # grade_ids of locked and test cells (nbgrader overwrites their source)
    protected: frozenset[str]  # names a student cell may not bind
    imported: frozenset[str]  # names locked cells bind with imports
    stub_names: frozenset[str]  # names the release's solution cells bind (the student writes those)


def notebook_rules(release: Any) -> NotebookRules:
    restored = {grade_id(c) for c in release.cells if grade_id(c) and (grader_meta(c).get("locked") or is_test(c))}
    locked_names: set[str] = set()
    imported: set[str] = set()
    stub_names: set[str] = set()
    for cell in release.cells:
        if cell.cell_type != "code":
            continue
        tree = _parse(cell.source)
        if tree is None:
            continue
        names = _top_level_bindings(tree)
        if is_solution(cell):
            stub_names |= names
        elif grade_id(cell) in restored or grader_meta(cell).get("locked"):
            locked_names |= names
            for node in ast.walk(tree):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    imported.update((a.asname or a.name).split(".")[0] for a in node.names)
    protected = (set(dir(builtins)) | locked_names | IPYTHON_NAMES) - stub_names
    return NotebookRules(frozenset(restored), frozenset(protected), frozenset(imported), frozenset(stub_names))


def check_notebook(submitted: Any, release: Any, allowed_imports: frozenset[str]) -> list[Violation]:
    """Every violation of the policy in the cells the student wrote (those nbgrader does not restore)."""
    rules = notebook_rules(release)
    violations: list[Violation] = []
    for index, cell in enumerate(submitted.cells):
        if cell.cell_type != "code" or (grade_id(cell) in rules.restored and not is_solution(cell)):
            continue
        label = grade_id(cell) or f"cell {index + 1}"
        source = cell.source
        if _ipython_syntax(source):
            violations.append(Violation(label, 1, "IPython magics, shell commands and '?' help are not allowed"))
            continue
        tree = _parse(source)
        if tree is None:
            continue  # not Python: it runs nothing, and its tests fail
        checker = _Checker(allowed_imports, set(rules.protected), set(rules.imported))
        checker.visit(tree)
        for name in sorted(_top_level_bindings(tree) & rules.protected):
            checker.found.append(
                (_binding_line(tree, name), f"rebinding {name!r}, which the tests read, is not allowed")
            )
        violations += [Violation(label, line, reason) for line, reason in sorted(set(checker.found))]
    return violations


def _binding_line(tree: ast.Module, name: str) -> int:
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Store):
            return node.lineno
        if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef) and node.name == name:
            return node.lineno
        if isinstance(node, ast.Import | ast.ImportFrom) and any(
            (a.asname or a.name).split(".")[0] == name for a in node.names
        ):
            return node.lineno
    return 1
