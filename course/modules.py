"""Where the course lives on disk, which modules it has, and what each one needs first.

A module's prerequisites are not written down twice: they are read from the
``from tinytorch.X import ...`` lines of its source notebook, matched against the
``#| default_exp X`` line of the notebook that exports ``tinytorch.X``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

DEFAULT_EXP = re.compile(r"^#\|\s*default_exp\s+(?P<module>[\w.]+)", re.MULTILINE)
TINYTORCH_IMPORT = re.compile(r"^\s*(?:from|import)\s+tinytorch\.(?P<module>[\w.]+)", re.MULTILINE)
MODULE_DIR = re.compile(r"^(?P<number>\d\d)_(?P<title>\w+)$")
TYPE_CHECKING_IF = re.compile(r"^\s*if\s+(?:typing\.)?TYPE_CHECKING\s*:\s*(?:#.*)?$")


class CourseError(Exception):
    """A problem the user can fix, reported as one clear sentence instead of a traceback."""


@dataclass(frozen=True)
class Course:
    """The folders of one course checkout (the folder that holds ``nbgrader_config.py``).

    ``db_url`` names another gradebook than ``gradebook.db`` in the root, such as a PostgreSQL
    URL shared by graders on several machines.
    """

    root: Path
    db_url: str | None = None

    @property
    def source(self) -> Path:
        return self.root / "source"

    @property
    def release(self) -> Path:
        return self.root / "release"

    @property
    def workspace(self) -> Path:
        """The learner's folder: working copies of release notebooks and their own package."""
        return self.root / "notebooks"

    @property
    def learner_package(self) -> Path:
        return self.workspace / "tinytorch"

    @property
    def submitted(self) -> Path:
        return self.root / "submitted"

    @property
    def autograded(self) -> Path:
        return self.root / "autograded"

    @property
    def feedback(self) -> Path:
        return self.root / "feedback"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def gradebook_url(self) -> str:
        return self.db_url or f"sqlite:///{self.root / 'gradebook.db'}"

    # One place owns nbgrader's layout: <folder>/[<student>/]<NN_name>/<NN_name>.<ext>.
    def source_notebook(self, module_name: str) -> Path:
        return self.source / module_name / f"{module_name}.ipynb"

    def release_notebook(self, module_name: str) -> Path:
        return self.release / module_name / f"{module_name}.ipynb"

    def submission_folder(self, student: str, module_name: str) -> Path:
        return self.submitted / student / module_name

    def submitted_notebook(self, student: str, module_name: str) -> Path:
        return self.submission_folder(student, module_name) / f"{module_name}.ipynb"

    def autograded_folder(self, student: str, module_name: str) -> Path:
        return self.autograded / student / module_name

    def autograded_notebook(self, student: str, module_name: str) -> Path:
        return self.autograded_folder(student, module_name) / f"{module_name}.ipynb"

    def feedback_page(self, student: str, module_name: str) -> Path:
        return self.feedback / student / module_name / f"{module_name}.html"


def find_course(start: Path | None = None, db_url: str | None = None) -> Course:
    """The course whose root holds ``start`` (default: the current directory)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "nbgrader_config.py").is_file() and (folder / "source").is_dir():
            return Course(folder, db_url)
    raise CourseError(
        f"{here} is not inside a tinytorch course: run the command from the folder that holds "
        "nbgrader_config.py and source/."
    )


@dataclass(frozen=True)
class Module:
    """One course module, as its source notebook describes it."""

    number: int
    title: str
    source_notebook: Path
    exports: str | None
    imports: tuple[str, ...]

    @property
    def name(self) -> str:
        """The assignment name nbgrader uses, e.g. ``01_tensor``."""
        return f"{self.number:02d}_{self.title}"

    @property
    def package_module(self) -> str | None:
        """The dotted module its export creates, e.g. ``tinytorch.core.tensor``."""
        return f"tinytorch.{self.exports}" if self.exports else None

    def exported_file(self, package_root: Path) -> Path | None:
        """Where this module's export lands inside a ``tinytorch`` package folder."""
        if not self.exports:
            return None
        return package_root.joinpath(*self.exports.split(".")).with_suffix(".py")


def _read_module(folder: Path) -> Module | None:
    match = MODULE_DIR.match(folder.name)
    notebook = folder / f"{folder.name}.ipynb"
    if not match or not notebook.is_file():
        return None
    nb = nbformat.read(notebook, as_version=4)
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    default_exp = DEFAULT_EXP.search(code)
    exports = default_exp["module"] if default_exp else None
    imports = tuple(i for i in imports_of(code) if i != exports)
    return Module(int(match["number"]), match["title"], notebook, exports, imports)


def discover(course: Course) -> list[Module]:
    """All modules under ``source/``, in course order."""
    if not course.source.is_dir():
        return []
    found = (_read_module(folder) for folder in sorted(course.source.iterdir()) if folder.is_dir())
    return [module for module in found if module is not None]


def resolve(course: Course, key: str) -> Module:
    """The module named by ``key``: ``1``, ``01``, ``tensor`` or ``01_tensor``."""
    modules = discover(course)
    wanted = key.strip().lower()
    for module in modules:
        if wanted in (module.name, module.title) or (wanted.isdigit() and int(wanted) == module.number):
            return module
    known = ", ".join(module.name for module in modules) or "none yet"
    raise CourseError(f"There is no module {key!r}; the modules are: {known}.")


def prerequisites(course: Course, module: Module) -> list[Module]:
    """The earlier modules whose exports ``module`` imports."""
    return providers(course, module.imports)


def imports_of(code: str) -> tuple[str, ...]:
    """The ``tinytorch`` submodules that ``code`` imports, e.g. ``("core.layers",)``.

    Imports inside an ``if TYPE_CHECKING:`` block are left out: they are read by type checkers only, never run,
    so they are no prerequisite (module 02 names module 03's activation classes that way for mypy).
    """
    return tuple(sorted({m["module"] for m in TINYTORCH_IMPORT.finditer(_without_type_checking_blocks(code))}))


def _without_type_checking_blocks(code: str) -> str:
    """``code`` without the lines of each ``if TYPE_CHECKING:`` block (the ``if`` line and its indented body)."""
    kept: list[str] = []
    block_indent: int | None = None
    for line in code.splitlines():
        indent = len(line) - len(line.lstrip())
        if block_indent is not None:
            if not line.strip() or indent > block_indent:
                continue
            block_indent = None
        if TYPE_CHECKING_IF.match(line):
            block_indent = indent
            continue
        kept.append(line)
    return "\n".join(kept)


def providers(course: Course, imports: tuple[str, ...]) -> list[Module]:
    """The modules whose exports provide ``imports``, in course order."""
    by_export = {m.exports: m for m in discover(course) if m.exports}
    needed: dict[str, Module] = {}
    for imported in imports:
        for exported, owner in by_export.items():
            if imported == exported or imported.startswith(exported + "."):
                needed[owner.name] = owner
    return sorted(needed.values(), key=lambda m: m.number)
