"""``course autograde``: every submission graded by nbgrader in a sandbox, in parallel, with a reason.

Each submission is graded by its own ``nbgrader autograde --student S`` process, so one
broken submission cannot stop the others, and several run at once (SQLite takes concurrent
writers from separate processes; a "database is locked" run is retried). Afterwards every
submission is either "graded" or "needs attention", with the reason read from nbgrader's log
and the graded notebook: a dead kernel, a cell past its time limit, deleted test cells.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course import notebooks
from course.grading import log_tail, nbgrader
from course.guard import suspicious_lines
from course.learner import export_notebook
from course.modules import Course, CourseError, Module, discover, resolve
from course.sandbox import CUMULATIVE_ENV, NO_SANDBOX_ENV, sandbox_problem

GRADED, ATTENTION = "graded", "needs attention"
LOCKED_RETRIES = 3


@dataclass(frozen=True)
class Submission:
    """How one student's submission of one assignment stands after grading."""

    student: str
    assignment: str
    status: str  # GRADED or ATTENTION
    score: float | None
    max_score: float | None
    reason: str = ""


@dataclass(frozen=True)
class Options:
    force: bool = False
    sandbox: bool = True
    workers: int = 0  # 0: one per CPU core
    scheduler: str | None = None  # a Dask scheduler address: grade on its workers instead
    cumulative: bool = False  # grade against the student's own earlier submissions, not the reference


def submitted_students(course: Course, module: Module) -> list[str]:
    if not course.submitted.is_dir():
        return []
    return sorted(p.name for p in course.submitted.iterdir() if (p / module.name).is_dir())


def gradebook_score(course: Course, assignment: str, student: str) -> tuple[float, float] | None:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(course.gradebook_url) as gradebook:
        try:
            submission = gradebook.find_submission(assignment, student)
        except MissingEntry:
            return None
        return float(submission.score), float(submission.max_score)


def _notebook_name(module: Module) -> str:
    return f"{module.name}.ipynb"


def _submission_problems(course: Course, module: Module, student: str) -> list[str]:
    """What in the submitted notebook means a person should look at it, whatever its score."""
    release = notebooks.read(course.release / module.name / _notebook_name(module))
    submitted_path = course.submitted / student / module.name / _notebook_name(module)
    if not submitted_path.is_file():
        return [f"no {_notebook_name(module)} in the submission"]
    submitted = notebooks.read(submitted_path)
    problems: list[str] = []
    suspicious = suspicious_lines(submitted, release)
    if suspicious:
        problems.append(f"review for tampering (the answers use {', '.join(suspicious)})")
    expected = {notebooks.grade_id(cell) for cell in release.cells if notebooks.is_test(cell)}
    deleted = expected - {notebooks.grade_id(c) for c in submitted.cells if notebooks.is_test(c)}
    if deleted:
        problems.append(f"test cells deleted: {', '.join(sorted(deleted))}")
    return problems


def _run_problems(course: Course, module: Module, student: str, log: str) -> list[str]:
    """What went wrong while the notebook ran, from nbgrader's log and the graded notebook."""
    problems = _log_problems(log)
    graded = course.autograded / student / module.name / _notebook_name(module)
    if not graded.is_file():
        return [*problems, "nbgrader wrote no graded notebook"]
    errors = {o.get("ename") for c in notebooks.read(graded).cells for o in c.get("outputs", [])}
    if "CellTimeoutError" in errors:
        problems.append("a cell ran past the time limit")
    if "DeadKernelError" in errors:
        problems.append("the kernel died (a crash, os._exit or a memory limit)")
    return problems


def _log_problems(log: str) -> list[str]:
    known = {
        "DeadKernelError": "the kernel died (a crash, os._exit or a memory limit)",
        "Kernel died": "the kernel died (a crash, os._exit or a memory limit)",
        "CellTimeoutError": "a cell ran past the time limit",
        "Timeout waiting for": "a cell ran past the time limit",
    }
    return sorted({reason for marker, reason in known.items() if marker in log})


def _run_nbgrader(
    course: Course, module: Module, student: str, force: bool, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    args = ["autograde", module.name, "--student", student] + (["--force"] if force else [])
    for _ in range(LOCKED_RETRIES):
        result = nbgrader(course, *args, env=env)
        if "database is locked" not in result.stdout + result.stderr:
            break
        args = [*args, "--force"] if "--force" not in args else args  # the locked run recorded nothing
    return result


def build_own_package(course: Course, module: Module, student: str, target: Path) -> list[str]:
    """Export the student's submissions of the modules before ``module`` into ``target/tinytorch``.

    This is what cumulative grading imports instead of the reference package; returns the
    problems that mean a person should look (a missing or unexportable earlier submission).
    """
    problems: list[str] = []
    package = target / "tinytorch"
    package.mkdir(parents=True)
    for earlier in discover(course):
        if earlier.number >= module.number or not earlier.exports:
            continue
        notebook = course.submitted / student / earlier.name / f"{earlier.name}.ipynb"
        if not notebook.is_file():
            problems.append(f"cumulative grading: no submission of {earlier.name} to build on")
        elif not export_notebook(notebook, earlier, package):
            problems.append(f"cumulative grading: {earlier.name} could not be exported")
    return problems


def grade_one(course: Course, module: Module, student: str, options: Options) -> Submission:
    """Grade one submission (unless already graded and not forced) and say how it stands."""
    if (course.autograded / student / module.name).is_dir() and not options.force:
        score = gradebook_score(course, module.name, student)
        reason = "already graded; kept (pass --force to grade again)"
        if score is None:
            return Submission(student, module.name, ATTENTION, None, None, reason)
        return Submission(student, module.name, GRADED, *score, reason=reason)
    with tempfile.TemporaryDirectory(prefix="tt-own-") as own:
        env = {} if options.sandbox else {NO_SANDBOX_ENV: "1"}
        missing = []
        if options.cumulative:
            missing = build_own_package(course, module, student, Path(own))
            env[CUMULATIVE_ENV] = own  # the sandbox puts it first on the kernel's path
            if not options.sandbox:
                env["PYTHONPATH"] = own
        result = _run_nbgrader(course, module, student, options.force, env)
    score = gradebook_score(course, module.name, student)
    problems = _run_problems(course, module, student, result.stdout + result.stderr)
    problems += missing + _submission_problems(course, module, student)
    problems = list(dict.fromkeys(problems))  # each reason once, in order
    if result.returncode != 0 and not problems:
        problems.append(f"nbgrader failed: {log_tail(result)}")
    if score is None:
        return Submission(student, module.name, ATTENTION, None, None, "; ".join(problems or ["no grade recorded"]))
    return Submission(student, module.name, ATTENTION if problems else GRADED, *score, reason="; ".join(problems))


def autograde(
    course: Course, key: str, student: str | None = None, options: Options | None = None, *, progress: bool = False
) -> list[Submission]:
    """Grade the submissions of one assignment in parallel; earlier grades are kept unless forced."""
    options = options or Options()
    module = resolve(course, key)
    everyone = submitted_students(course, module)
    if student and student not in everyone:
        raise CourseError(f"There is no submission of {module.name} by {student!r} in submitted/.")
    students = [student] if student else everyone
    if not students:
        raise CourseError(f"Nobody has submitted {module.name} yet: submissions go in submitted/<student>/.")
    if options.sandbox:
        problem = sandbox_problem()
        if problem:
            raise CourseError(
                f"Refusing to grade without a sandbox: {problem}. "
                "Pass --no-sandbox to grade unsandboxed, only for code you trust."
            )
    grade = _on_dask if options.scheduler else _on_threads
    return sorted(grade(course, module, students, options, progress), key=lambda s: s.student)


def _progress(done: Iterable[Any], total: int, module: Module, show: bool) -> Iterable[Any]:
    if not show:
        return done
    from tqdm import tqdm

    bar: Iterable[Any] = tqdm(done, total=total, desc=f"grading {module.name}", unit="submission")
    return bar


def _on_threads(
    course: Course, module: Module, students: list[str], options: Options, progress: bool
) -> list[Submission]:
    """Local worker threads, each driving one nbgrader process at a time."""
    with ThreadPoolExecutor(max_workers=options.workers or os.cpu_count() or 1) as pool:
        futures = [pool.submit(grade_one, course, module, name, options) for name in students]
        return [f.result() for f in _progress(as_completed(futures), len(futures), module, progress)]


def _on_dask(
    course: Course, module: Module, students: list[str], options: Options, progress: bool
) -> list[Submission]:
    """Dask workers (on other machines, with Slurm or Kubernetes): they need the course folder at the
    same path (a shared file system) and a gradebook they can all reach, such as PostgreSQL."""
    from distributed import Client
    from distributed import as_completed as dask_completed

    with Client(options.scheduler) as client:
        futures = [client.submit(grade_one, course, module, name, options, pure=False) for name in students]
        return [f.result() for f in _progress(dask_completed(futures), len(futures), module, progress)]
