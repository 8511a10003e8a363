"""``course milestone NAME``: re-create a historical result with the reference tinytorch or the learner's own.

The milestones are plain scripts in ``milestones/`` (``1957_perceptron.py`` ...), readable on their own and
runnable with ``python``; this module finds them, checks that the learner exported every module a script
imports, and runs it in a fresh interpreter whose ``tinytorch`` is the chosen one.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from course.learner import is_exported
from course.modules import Course, CourseError, imports_of, prerequisites, providers
from course.package import NAMESPACES

SCRIPT_NAME = re.compile(r"^(?P<year>\d{4})_(?P<slug>[a-z0-9_]+)\.py$")


@dataclass(frozen=True)
class Milestone:
    year: int
    slug: str
    script: Path

    @property
    def name(self) -> str:
        return f"{self.year}_{self.slug}"

    @property
    def title(self) -> str:
        """The first line of the script's docstring, e.g. ``1957: Rosenblatt's perceptron ...``."""
        text = self.script.read_text(encoding="utf-8")
        match = re.search(r'"""(.+)', text)
        return match[1].strip() if match else self.name

    @property
    def has_quick_run(self) -> bool:
        """Whether the script offers ``--quick``: it calls ``start(..., quick=...)`` (see milestones/milestone.py)."""
        tree = ast.parse(self.script.read_text(encoding="utf-8"))
        return any(
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "start"
            and any(keyword.arg == "quick" for keyword in node.keywords)
            for node in ast.walk(tree)
        )


def discover_milestones(course: Course) -> list[Milestone]:
    folder = course.root / "milestones"
    found = (SCRIPT_NAME.match(path.name) for path in sorted(folder.glob("*.py")))
    return [Milestone(int(m["year"]), m["slug"], folder / m.string) for m in found if m]


def resolve_milestone(course: Course, key: str) -> Milestone:
    """``1957``, ``perceptron`` or ``1957_perceptron``."""
    milestones = discover_milestones(course)
    wanted = key.strip().lower()
    for milestone in milestones:
        if wanted in (str(milestone.year), milestone.slug, milestone.name):
            return milestone
    known = ", ".join(m.name for m in milestones) or "none yet"
    raise CourseError(f"There is no milestone {key!r}; the milestones are: {known}.")


def used_modules(code: str) -> tuple[str, ...]:
    """The tinytorch package modules that ``code`` uses, e.g. ``("core.convolutions", "core.training")``.

    ``from tinytorch.core.training import fit`` counts as ``core.training``; a name imported from a PyTorch-shaped
    namespace counts as the module that provides it (``from tinytorch.nn import Conv2d`` is ``core.convolutions``,
    ``from tinytorch import no_grad`` is ``core.autograd``), read from ``course.package.NAMESPACES``.
    """
    used = set(imports_of(code))
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in NAMESPACES:
            for alias in node.names:
                used.update(module for module, names in NAMESPACES[node.module].items() if alias.name in names.split())
    return tuple(sorted(used))


def missing_modules(course: Course, milestone: Milestone) -> list[str]:
    """The modules the script imports that the learner has not exported, e.g. ``["07_optimizers"]``."""
    needed = {m.name: m for m in providers(course, used_modules(milestone.script.read_text(encoding="utf-8")))}
    pending = list(needed.values())
    while pending:  # and what those modules import in turn
        for earlier in prerequisites(course, pending.pop()):
            if earlier.name not in needed:
                needed[earlier.name] = earlier
                pending.append(earlier)
    in_order = sorted(needed.values(), key=lambda m: m.number)
    return [module.name for module in in_order if not is_exported(course, module)]


def command(
    course: Course, milestone: Milestone, *, learner: bool, out: Path, quick: bool = False
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run ``milestone`` with the chosen ``tinytorch``."""
    env = dict(os.environ, MPLBACKEND="Agg")
    if learner:
        missing = missing_modules(course, milestone)
        if missing:
            exports = "; ".join(f"course export {name[:2]}" for name in missing)
            raise CourseError(
                f"Milestone {milestone.name} uses {', '.join(missing)}, which you have not exported yet: "
                f"finish them and run `{exports}` (or run the milestone without --learner)."
            )
        # A PYTHONPATH entry is searched before the editable install of the reference package.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(course.workspace), env.get("PYTHONPATH")]))
    return [sys.executable, str(milestone.script), "--out", str(out), *(["--quick"] if quick else [])], env


def run(course: Course, key: str, *, learner: bool = False, out: Path | None = None, quick: bool = False) -> int:
    """Run a milestone; its exit status is 0 when it reached its historical result."""
    milestone = resolve_milestone(course, key)
    if quick and not milestone.has_quick_run:
        quick_ones = ", ".join(m.name for m in discover_milestones(course) if m.has_quick_run) or "none"
        raise CourseError(
            f"Milestone {milestone.name} has no --quick run (it is short already); these have one: {quick_ones}."
        )
    folder = out or course.reports / "milestones"
    folder.mkdir(parents=True, exist_ok=True)
    argv, env = command(course, milestone, learner=learner, out=folder, quick=quick)
    return subprocess.run(argv, env=env, cwd=course.root, check=False).returncode
