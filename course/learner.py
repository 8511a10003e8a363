"""The learner's loop: start a module, export it into your own package, check it."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

from course import notebooks
from course.kernels import PrivateIpcKernelManager
from course.modules import Course, CourseError, Module, discover, prerequisites, resolve
from course.package import export_notebook, write_namespaces

CHECK_CELL_TIMEOUT = 120


def working_copy(course: Course, module: Module) -> Path:
    return course.workspace / f"{module.name}.ipynb"


def release_notebook(course: Course, module: Module) -> Path:
    path = course.release_notebook(module.name)
    if not path.is_file():
        raise CourseError(
            f"Module {module.name} has no student release yet: run `make build` (or `course release`) first."
        )
    return path


def is_exported(course: Course, module: Module) -> bool:
    exported = module.exported_file(course.learner_package)
    return exported is not None and exported.is_file()


def missing_prerequisites(course: Course, module: Module) -> list[Module]:
    return [needed for needed in prerequisites(course, module) if not is_exported(course, needed)]


def _require_prerequisites(course: Course, module: Module) -> None:
    missing = missing_prerequisites(course, module)
    if missing:
        names = " and ".join(m.name for m in missing)
        commands = "; ".join(f"course export {m.number:02d}" for m in missing)
        raise CourseError(
            f"Module {module.name} builds on {names}, which you have not exported yet: finish it and run `{commands}`."
        )


def _ensure_package_root(course: Course) -> None:
    """Make ``notebooks/tinytorch`` a package, so notebooks there import the learner's code first.

    Its namespaces (``tinytorch.nn``, ``tinytorch.optim``, ...) are written each time, as in the reference
    package; they are generated, never the learner's work.
    """
    write_namespaces(course, course.learner_package)


def start(course: Course, key: str, *, ignore_prerequisites: bool = False) -> str:
    """Copy a module's release notebook into the workspace; an existing copy is never replaced."""
    module = resolve(course, key)
    release = release_notebook(course, module)
    if not ignore_prerequisites:
        _require_prerequisites(course, module)
    _ensure_package_root(course)
    target = working_copy(course, module)
    relative = target.relative_to(course.root)
    if target.exists():
        return f"You already started {module.name}: your copy {relative} is kept as it is. " + _next_steps(
            module, relative
        )
    shutil.copyfile(release, target)
    return f"Started {module.name}: your copy is {relative}. " + _next_steps(module, relative)


def _next_steps(module: Module, relative: Path) -> str:
    return (
        f"Open it with `jupyter lab {relative}`, fill in the cells marked YOUR CODE HERE, then run "
        f"`course export {module.number:02d}` and `course check {module.number:02d}`."
    )


def _started_modules(course: Course) -> list[Module]:
    return [m for m in discover(course) if working_copy(course, m).is_file()]


def export(course: Course, key: str | None = None) -> list[str]:
    """Export working copies into ``notebooks/tinytorch``; returns the package modules written."""
    modules = [resolve(course, key)] if key else _started_modules(course)
    if key and not working_copy(course, modules[0]).is_file():
        raise CourseError(f"You have not started {modules[0].name} yet: run `course start {key}` first.")
    if not modules:
        raise CourseError("There is nothing to export yet: start a module with `course start 01`.")
    _ensure_package_root(course)
    written: list[str] = []
    for module in modules:
        if not export_notebook(working_copy(course, module), module, course.learner_package):
            raise CourseError(
                f"{module.name} could not be exported: keep its `#| default_exp {module.exports}` setup cell as it is."
            )
        written.append(str(module.package_module))
    return written


@dataclass(frozen=True)
class TestResult:
    """One visible test cell run against the learner's package."""

    grade_id: str
    points: float
    passed: bool
    reason: str


def _setup_sources(release: Any) -> list[str]:
    """The locked code cells before the first solution cell: the imports the tests rely on."""
    setup: list[str] = []
    for cell in release.cells:
        if notebooks.is_solution(cell):
            break
        if cell.cell_type == "code":
            setup.append(cell.source)
    return setup


def _import_everything(package_module: str) -> str:
    """Code that binds every name the exported module defines, private ones included.

    A visible test may call a helper such as ``_matmul_backward`` that the notebook defined in an
    exported cell; ``from module import *`` would leave it out (and ``__all__`` with it).
    """
    return (
        "import importlib as _course_importlib\n"
        f"_course_module = _course_importlib.import_module({package_module!r})\n"
        "globals().update({_name: _value for _name, _value in vars(_course_module).items()"
        " if not (_name.startswith('__') and _name.endswith('__'))})\n"
        "del _course_importlib, _course_module"
    )


def _check_notebook(course: Course, module: Module) -> tuple[Any, list[tuple[str, float]]]:
    """A notebook: setup, ``from <learner's module> import *``, then each visible test cell."""
    release = notebooks.read(release_notebook(course, module))
    nb = nbformat.v4.new_notebook()
    nb.metadata = release.metadata
    nb.cells = [nbformat.v4.new_code_cell(source) for source in _setup_sources(release)]
    nb.cells.append(nbformat.v4.new_code_cell(_import_everything(str(module.package_module))))
    tests: list[tuple[str, float]] = []
    for cell in release.cells:
        if notebooks.is_test(cell) and not notebooks.is_notebook_only(cell):
            nb.cells.append(nbformat.v4.new_code_cell(notebooks.without_hidden_tests(cell.source)))
            tests.append((notebooks.grade_id(cell), float(notebooks.grader_meta(cell).get("points", 0))))
    return nb, tests


def notebook_only_tests(course: Course, module: Module) -> list[tuple[str, float]]:
    """The test cells ``course check`` leaves to the notebook (grade id, points): they test what the notebook
    built in its own run, e.g. module 20's trained model, which the learner's package does not hold."""
    release = notebooks.read(release_notebook(course, module))
    return [
        (notebooks.grade_id(cell), float(notebooks.grader_meta(cell).get("points", 0)))
        for cell in release.cells
        if notebooks.is_notebook_only(cell)
    ]


def _failure(cell: Any) -> str | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            message = str(output.get("evalue", "")).strip().splitlines()
            return f"{output.get('ename')}: {message[0] if message else ''}".rstrip(": ")
    return None


def check(course: Course, key: str) -> list[TestResult]:
    """Run a module's visible tests against the learner's exported package."""
    module = resolve(course, key)
    if module.package_module is None:
        raise CourseError(f"Module {module.name} exports nothing, so there is no package to check.")
    _require_prerequisites(course, module)
    if not is_exported(course, module):
        raise CourseError(f"You have not exported {module.name} yet: run `course export {module.number:02d}` first.")
    nb, tests = _check_notebook(course, module)
    client = NotebookClient(
        nb,
        timeout=CHECK_CELL_TIMEOUT,
        allow_errors=True,
        kernel_manager_class=PrivateIpcKernelManager,
        resources={"metadata": {"path": str(course.workspace)}},
    )
    client.execute()
    cells = nb.cells[-len(tests) :] if tests else []
    setup_error = next(
        (_failure(c) for c in nb.cells[: len(nb.cells) - len(tests)] if _failure(c)),
        None,
    )
    results = []
    for (test_id, points), cell in zip(tests, cells, strict=True):
        reason = _failure(cell) or ""
        if setup_error:
            reason = f"setup failed: {setup_error}"
        results.append(TestResult(test_id, points, passed=not reason, reason=reason))
    return results


def exported_is_stale(course: Course, module: Module) -> bool:
    """True when the working copy changed after the last export (the check would test old code)."""
    exported = module.exported_file(course.learner_package)
    notebook = working_copy(course, module)
    return bool(exported and exported.is_file() and notebook.is_file()) and (
        notebook.stat().st_mtime > exported.stat().st_mtime  # type: ignore[union-attr]
    )


CHECK_RECORD = ".course-checks.json"


@dataclass(frozen=True)
class CheckRecord:
    """What the learner's last ``course check`` of a module found, kept for ``course list``."""

    passed: int
    total: int
    points: float
    max_points: float
    when: str

    @property
    def all_passed(self) -> bool:
        return self.total > 0 and self.passed == self.total


def _check_records_file(course: Course) -> Path:
    return course.workspace / CHECK_RECORD


def last_checks(course: Course) -> dict[str, CheckRecord]:
    """The last check of each module, by module name (empty when the learner never ran one)."""
    path = _check_records_file(course)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {name: CheckRecord(**fields) for name, fields in raw.items()}
    except (OSError, ValueError, TypeError):
        return {}


def record_check(course: Course, module: Module, results: list[TestResult]) -> CheckRecord:
    """Remember a check's outcome (atomically, so an interrupted write never loses the others)."""
    record = CheckRecord(
        passed=sum(r.passed for r in results),
        total=len(results),
        points=sum(r.points for r in results if r.passed),
        max_points=sum(r.points for r in results),
        when=datetime.now().isoformat(timespec="seconds"),
    )
    records = {name: vars(found) for name, found in last_checks(course).items()}
    records[module.name] = vars(record)
    path = _check_records_file(course)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(records, indent=1, sort_keys=True), encoding="utf-8")
    partial.replace(path)
    return record
