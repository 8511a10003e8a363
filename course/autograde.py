"""``course autograde``: every submission graded by nbgrader in a sandbox, in parallel, with a reason.

Each submission is graded by its own ``nbgrader autograde --student S`` process, so one
broken submission cannot stop the others, and several run at once (SQLite takes concurrent
writers from separate processes; a "database is locked" run is retried). Afterwards every
submission is either "graded" or "needs attention", with the reason read from nbgrader's log
and the graded notebook: a dead kernel, a cell past its time limit, deleted test cells.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from course import notebooks
from course.grading import nbgrader
from course.guard import suspicious_lines
from course.modules import Course, CourseError, Module, discover, resolve
from course.package import export_notebook, write_namespaces
from course.sandbox import CUMULATIVE_ENV, NO_SANDBOX_ENV, sandbox_problem

GRADED, ATTENTION = "graded", "needs attention"
LOCKED_RETRIES = 3
MAX_BATCH = 25
SANITIZING = re.compile(r"Sanitizing .*/submitted/(?P<student>[^/]+)/")
FAILED_FOR = re.compile(r"error processing assignment '[^']*' for student '(?P<student>[^']+)'")


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
    if FAILED_FOR.search(log):
        problems.append("nbgrader could not finish grading it")
    graded = course.autograded / student / module.name / _notebook_name(module)
    if not graded.is_file():
        return [*problems, "nbgrader wrote no graded notebook"]
    errors = " ".join(str(o.get("ename")) for c in notebooks.read(graded).cells for o in c.get("outputs", []))
    return problems + _log_problems(errors)


KNOWN_FAILURES = {  # text in nbgrader's log or an error name in the graded notebook -> the reason
    "DeadKernelError": "the kernel died (a crash, os._exit or a memory limit)",
    "Kernel died": "the kernel died (a crash, os._exit or a memory limit)",
    "CellTimeoutError": "a cell ran past the time limit",
    "Timeout waiting for": "a cell ran past the time limit",
}


def _log_problems(text: str) -> list[str]:
    return sorted({reason for marker, reason in KNOWN_FAILURES.items() if marker in text})


def build_own_package(course: Course, module: Module, student: str, target: Path) -> list[str]:
    """Export the student's submissions of the modules before ``module`` into ``target/tinytorch``.

    This is what cumulative grading imports instead of the reference package; returns the
    problems that mean a person should look (a missing or unexportable earlier submission).
    """
    problems: list[str] = []
    package = target / "tinytorch"
    package.mkdir(parents=True)
    write_namespaces(course, package)
    for earlier in discover(course):
        if earlier.number >= module.number or not earlier.exports:
            continue
        notebook = course.submitted / student / earlier.name / f"{earlier.name}.ipynb"
        if not notebook.is_file():
            problems.append(f"cumulative grading: no submission of {earlier.name} to build on")
        elif not export_notebook(notebook, earlier, package):
            problems.append(f"cumulative grading: {earlier.name} could not be exported")
    return problems


def _kept(course: Course, module: Module, student: str) -> Submission:
    score = gradebook_score(course, module.name, student)
    reason = "already graded; kept (pass --force to grade again)"
    if score is None:
        return Submission(student, module.name, ATTENTION, None, None, reason)
    return Submission(student, module.name, GRADED, *score, reason=reason)


def _log_by_student(log: str, students: list[str]) -> dict[str, str]:
    """nbgrader's log of a batch, cut into each student's part (it grades them one after another)."""
    parts: dict[str, list[str]] = {student: [] for student in students}
    current: str | None = None
    for line in log.splitlines():
        starting = SANITIZING.search(line)
        if starting and starting["student"] in parts:
            current = starting["student"]
        failed = FAILED_FOR.search(line)
        if failed and failed["student"] in parts:
            parts[failed["student"]].append(line)
        elif current is not None:
            parts[current].append(line)
    return {student: "\n".join(lines) for student, lines in parts.items()}


def _run_batch(
    course: Course, module: Module, students: list[str], options: Options, env: dict[str, str]
) -> dict[str, str]:
    """One ``nbgrader autograde`` process for ``students``; returns each student's part of its log."""
    others = sorted(set(submitted_students(course, module)) - set(students))
    args = ["autograde", module.name, f"--CourseDirectory.student_id_exclude={','.join(others)}"]
    result = nbgrader(course, *args, *(["--force"] if options.force else []), env=env)
    return _log_by_student(result.stdout + result.stderr, students)


def _status(course: Course, module: Module, student: str, log: str, extra: list[str]) -> Submission:
    score = gradebook_score(course, module.name, student)
    problems = _run_problems(course, module, student, log) + extra + _submission_problems(course, module, student)
    problems = list(dict.fromkeys(problems))  # each reason once, in order
    if score is None:
        return Submission(student, module.name, ATTENTION, None, None, "; ".join(problems or ["no grade recorded"]))
    return Submission(student, module.name, ATTENTION if problems else GRADED, *score, reason="; ".join(problems))


def grade_batch(course: Course, module: Module, students: list[str], options: Options) -> list[Submission]:
    """Grade ``students`` with one nbgrader process (its start-up, about 4 s, is paid once per batch).

    A student whose grading hit a locked SQLite gradebook is graded again on their own.
    """
    with tempfile.TemporaryDirectory(prefix="tt-own-") as own:
        env = {} if options.sandbox else {NO_SANDBOX_ENV: "1"}
        extra: dict[str, list[str]] = {student: [] for student in students}
        if options.cumulative:
            for student in students:
                extra[student] = build_own_package(course, module, student, Path(own) / student)
            env[CUMULATIVE_ENV] = own  # the sandbox puts <own>/<student> first on the kernel's path
            if not options.sandbox and len(students) == 1:
                env["PYTHONPATH"] = str(Path(own) / students[0])
        logs = _run_batch(course, module, students, options, env)
        for _ in range(LOCKED_RETRIES):
            locked = [student for student in students if "database is locked" in logs[student]]
            for student in locked:
                logs[student] = _run_batch(course, module, [student], replace(options, force=True), env)[student]
    return [_status(course, module, student, logs[student], extra[student]) for student in students]


def _batches(students: list[str], workers: int, options: Options) -> list[list[str]]:
    """Round-robin batches: enough of them to keep every worker busy, none above MAX_BATCH."""
    if options.cumulative and not options.sandbox:
        return [[student] for student in students]  # the kernel's path is set per nbgrader process
    count = max(workers, -(-len(students) // MAX_BATCH))
    return [batch for batch in (students[i::count] for i in range(count)) if batch]


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
    todo = students if options.force else [s for s in students if not (course.autograded / s / module.name).is_dir()]
    kept = [_kept(course, module, s) for s in students if s not in todo]
    grade = _on_dask if options.scheduler else _on_threads
    graded = grade(course, module, _batches(todo, options.workers or os.cpu_count() or 1, options), options, progress)
    return sorted(kept + graded, key=lambda s: s.student)


def _collect(futures: Iterable[Any], batches: list[list[str]], module: Module, show: bool) -> list[Submission]:
    """Each finished batch's results, with a progress bar counted in submissions."""
    from tqdm import tqdm

    results: list[Submission] = []
    with tqdm(total=sum(map(len, batches)), desc=f"grading {module.name}", unit="submission", disable=not show) as bar:
        for future in futures:
            batch = future.result()
            results.extend(batch)
            bar.update(len(batch))
    return results


def _on_threads(
    course: Course, module: Module, batches: list[list[str]], options: Options, progress: bool
) -> list[Submission]:
    """Local worker threads, each driving one nbgrader process (one batch) at a time."""
    with ThreadPoolExecutor(max_workers=options.workers or os.cpu_count() or 1) as pool:
        futures = [pool.submit(grade_batch, course, module, batch, options) for batch in batches]
        return _collect(as_completed(futures), batches, module, progress)


def _on_dask(
    course: Course, module: Module, batches: list[list[str]], options: Options, progress: bool
) -> list[Submission]:
    """Dask workers (on other machines, with Slurm or Kubernetes): they need the course folder at the
    same path (a shared file system) and a gradebook they can all reach, such as PostgreSQL."""
    from distributed import Client
    from distributed import as_completed as dask_completed

    with Client(options.scheduler) as client:
        futures = [client.submit(grade_batch, course, module, batch, options, pure=False) for batch in batches]
        return _collect(dask_completed(futures), batches, module, progress)
