"""``course autograde``: every submission checked, then graded by nbgrader in a sandbox, in parallel, with a reason.

The student's code is treated as hostile. Before anything runs, each submission is checked as
data (``course.submission``: regular files, a valid notebook, unique ids, locked cells present)
and its cells against the code policy (``course.policy``); a submission that fails either is not
run and needs attention, with the reason. The others are staged as clean copies and graded in
batches, one ``nbgrader autograde`` process per batch, several at once (SQLite takes concurrent
writers from separate processes; a "database is locked" run is retried). Kernels run sandboxed
and every test cell must prove it ran to its end (``course.execute``). Each submission's result
comes from the gradebook, its graded notebook and the status file the grader wrote for it,
never from a stream a kernel can write to: "graded", or "needs attention" with the reason
(a dead kernel, a cell or the notebook past its time limit, a test credited without proof).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from course import notebooks, submission
from course.execute import STATUS_ENV
from course.grading import gradebook_was_locked, nbgrader
from course.modules import Course, CourseError, Module, discover, resolve
from course.package import export_notebook, write_namespaces
from course.policy import POLICY_URL, GradingPolicy, check_notebook, load_policy
from course.sandbox import CUMULATIVE_ENV, NO_SANDBOX_ENV, sandbox_problem


class Status(StrEnum):
    """How a submission stands after ``course autograde``: graded, or needing a person's attention (with a reason)."""

    GRADED = "graded"
    ATTENTION = "needs attention"


LOCKED_RETRIES = 3
# Python 3.11's parser keeps its recursion depth in one place for all threads: ast.parse in two worker
# threads at once fails ("AST constructor recursion depth mismatch"). Checking and exporting notebooks
# takes milliseconds, so the batches' threads take turns.
PARSING = threading.Lock()
MAX_BATCH = 25


@dataclass(frozen=True)
class Submission:
    """How one student's submission of one assignment stands after grading."""

    student: str
    assignment: str
    status: Status
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
    handed_in = (p.name for p in course.submitted.iterdir())
    return sorted(
        student
        for student in handed_in
        if (folder := course.submission_folder(student, module.name)).is_dir() or folder.is_symlink()
    )


def gradebook_score(course: Course, assignment: str, student: str) -> tuple[float, float] | None:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(course.gradebook_url) as gradebook:
        try:
            submission = gradebook.find_submission(assignment, student)
        except MissingEntry:
            return None
        return float(submission.score), float(submission.max_score)


def _release(course: Course, module: Module) -> Any:
    return notebooks.read(course.release_notebook(module.name))


REASONS = {  # what the grading status file says -> the reason a person reads
    "DeadKernelError": "the kernel died (a crash, os._exit or a memory limit)",
    "CellTimeoutError": "a cell ran past the time limit",
}


def _status_problems(status: dict[str, Any] | None) -> list[str]:
    """What went wrong while the notebook ran, as the grader's own Execute recorded it (course/execute.py)."""
    if status is None:
        return ["nbgrader could not finish grading it"]
    problems = []
    if status.get("error"):
        problems.append(REASONS.get(status["error"], f"grading stopped: {status['error']}"))
    if status.get("timeouts"):
        problems.append(f"{REASONS['CellTimeoutError']} ({', '.join(status['timeouts'][:5])})")
    if status.get("time_limit"):
        problems.append("the notebook ran past its wall-clock limit (the cells after it got no points)")
    if status.get("no_proof"):
        problems.append(
            "test cells reported as passed without proof that they ran to their end, given 0: "
            + ", ".join(status["no_proof"][:5])
        )
    return problems


def _graded_problems(course: Course, module: Module, student: str) -> list[str]:
    graded = course.autograded_notebook(student, module.name)
    return [] if graded.is_file() else ["nbgrader wrote no graded notebook"]


def build_own_package(course: Course, module: Module, student: str, target: Path) -> list[str]:
    """Export the student's submissions of the modules before ``module`` into ``target/tinytorch``.

    This is what cumulative grading imports instead of the reference package; returns the
    problems that mean a person should look (a missing, refused or unexportable earlier submission).
    Each earlier notebook is checked as data first and exported from a clean copy.
    """
    problems: list[str] = []
    package = target / "tinytorch"
    package.mkdir(parents=True)
    write_namespaces(course, package)
    for earlier in discover(course):
        if earlier.number >= module.number or not earlier.exports:
            continue
        if not course.submitted_notebook(student, earlier.name).exists():
            problems.append(f"cumulative grading: no submission of {earlier.name} to build on")
            continue
        checked = submission.check(course, earlier, student, _release(course, earlier))
        if checked.notebook is None:
            problems.append(f"cumulative grading: {earlier.name} refused ({'; '.join(checked.problems)})")
            continue
        staged = target / "staged" / earlier.name
        submission.stage(checked, staged, earlier)
        if not export_notebook(staged / f"{earlier.name}.ipynb", earlier, package):
            problems.append(f"cumulative grading: {earlier.name} could not be exported")
    return problems


def _kept(course: Course, module: Module, student: str) -> Submission:
    score = gradebook_score(course, module.name, student)
    reason = "already graded; kept (pass --force to grade again)"
    if score is None:
        return Submission(student, module.name, Status.ATTENTION, None, None, reason)
    return Submission(student, module.name, Status.GRADED, *score, reason=reason)


def _run_batch(course: Course, module: Module, staged: Path, options: Options, env: dict[str, str]) -> str:
    """One ``nbgrader autograde`` process over the staged submissions; returns nbgrader's own log.

    The log is used for nothing but a locked SQLite gradebook: kernels cannot write to it (their
    output streams go nowhere), and per-student results come from the status files and the gradebook.
    """
    args = ["autograde", module.name, f"--CourseDirectory.submitted_directory={staged}"]
    result = nbgrader(course, *args, *(["--force"] if options.force else []), env=env)
    return result.stdout[-100_000:] + result.stderr[-100_000:]


def _status(
    course: Course, module: Module, student: str, status: dict[str, Any] | None, extra: list[str]
) -> Submission:
    score = gradebook_score(course, module.name, student)
    problems = _status_problems(status) + _graded_problems(course, module, student) + extra
    problems = list(dict.fromkeys(problems))  # each reason once, in order
    if score is None:
        return Submission(
            student, module.name, Status.ATTENTION, None, None, "; ".join(problems or ["no grade recorded"])
        )
    return Submission(
        student, module.name, Status.ATTENTION if problems else Status.GRADED, *score, reason="; ".join(problems)
    )


def _read_status(folder: Path, student: str) -> dict[str, Any] | None:
    path = folder / f"{student}.json"
    try:
        status: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return status


def refused(module: Module, student: str, reasons: list[str], what: str) -> Submission:
    shown = reasons[:5] + ([f"... and {len(reasons) - 5} more"] if len(reasons) > 5 else [])
    return Submission(student, module.name, Status.ATTENTION, None, None, f"{what}: " + "; ".join(shown))


def screen(
    course: Course, module: Module, student: str, release: Any, policy: GradingPolicy
) -> submission.Checked | Submission:
    """The checked submission, or the reason it is not run: not valid as data, or outside the code policy."""
    checked = submission.check(course, module, student, release)
    if checked.notebook is None:
        return refused(module, student, checked.problems, "not graded, the submission was refused")
    if policy.enabled:
        violations = check_notebook(checked.notebook, release, policy.allowed_imports(module.name))
        if violations:
            return refused(
                module, student, [str(v) for v in violations], f"not run, outside the code policy ({POLICY_URL})"
            )
    return checked


def grade_batch(course: Course, module: Module, students: list[str], options: Options) -> list[Submission]:
    """Grade ``students`` with one nbgrader process (its start-up, about 4 s, is paid once per batch).

    Each submission is checked as data and against the code policy first; nbgrader grades clean
    copies of those that pass, staged in a private folder. A student whose grading hit a locked
    SQLite gradebook is graded again on their own.
    """
    release, policy = _release(course, module), load_policy(course.root)
    results: list[Submission] = []
    with tempfile.TemporaryDirectory(prefix="tt-grading-") as private:
        work = Path(private)
        staged, status_dir, own = work / "submitted", work / "status", work / "own"
        status_dir.mkdir()
        runnable: list[str] = []
        with PARSING:
            screens = {student: screen(course, module, student, release, policy) for student in students}
        for student in students:
            screened = screens[student]
            if isinstance(screened, Submission):
                results.append(screened)
            else:
                submission.stage(screened, staged / student / module.name, module)
                runnable.append(student)
        if not runnable:
            return results
        env = {STATUS_ENV: str(status_dir), **({} if options.sandbox else {NO_SANDBOX_ENV: "1"})}
        extra: dict[str, list[str]] = {student: [] for student in runnable}
        if options.cumulative:
            with PARSING:
                for student in runnable:
                    extra[student] = build_own_package(course, module, student, own / student)
            env[CUMULATIVE_ENV] = str(own)  # the sandbox puts <own>/<student> first on the kernel's path
            if not options.sandbox and len(runnable) == 1:
                env["PYTHONPATH"] = str(own / runnable[0])
        log = _run_batch(course, module, staged, options, env)
        for _ in range(LOCKED_RETRIES):
            if not gradebook_was_locked(log):
                break
            locked = [s for s in runnable if gradebook_score(course, module.name, s) is None]
            if not locked:
                break
            log = ""
            for student in locked:
                alone = work / f"alone-{student}"
                shutil.copytree(staged / student, alone / student)
                log += _run_batch(course, module, alone, replace(options, force=True), env)
        statuses = {student: _read_status(status_dir, student) for student in runnable}
    return results + [_status(course, module, student, statuses[student], extra[student]) for student in runnable]


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
    todo = students if options.force else [s for s in students if not course.autograded_folder(s, module.name).is_dir()]
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
