"""``course bench grading``: sandboxed parallel grading against plain sequential nbgrader, in one run.

Both grade the same N submissions of one module (the solution, so every run must score full
marks) in scratch copies of the course on this machine, one after the other:

* plain nbgrader: ``nbgrader autograde NN_name`` with nbgrader's own preprocessors, one process,
  every notebook run top to bottom (what nbgrader does out of the box);
* the course tool: ``course autograde NN_name``, every kernel sandboxed, submissions graded in
  parallel, the systems view after the last test cell not run.

It prints wall times, seconds per submission and their ratio. Speed is measured here, never
asserted in a test: the machines are noisy, so compare ratios from one run.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from course import notebooks, submission
from course.autograde import Options, autograde, submitted_students
from course.grading import grades, log_tail, nbgrader, release
from course.modules import Course, CourseError, resolve

PLAIN_CONFIG = """c = get_config()
c.CourseDirectory.course_id = "tinytorch"
c.CourseDirectory.db_url = "sqlite:///gradebook.db"
c.ExecutePreprocessor.timeout = 120
c.Execute.timeout = 120
"""


@dataclass(frozen=True)
class GradingBench:
    submissions: int
    plain_seconds: float
    course_seconds: float

    @property
    def speedup(self) -> float:
        return self.plain_seconds / self.course_seconds

    def table(self) -> str:
        n = self.submissions
        return "\n".join(
            [
                f"{'grader':<52} {'wall':>9} {'per submission':>15}",
                f"{'plain nbgrader autograde (sequential, unsandboxed)':<52} {self.plain_seconds:8.1f}s "
                f"{self.plain_seconds / n:14.2f}s",
                f"{'course autograde (sandboxed, parallel)':<52} {self.course_seconds:8.1f}s "
                f"{self.course_seconds / n:14.2f}s",
                f"speed-up: {self.speedup:.2f}x for {n} submissions",
            ]
        )


def _scratch(repo: Course, target: Path, config: str, module_name: str, count: int) -> Course:
    target.mkdir(parents=True)
    (target / "nbgrader_config.py").write_text(config, encoding="utf-8")
    shutil.copytree(repo.source / module_name, target / "source" / module_name)
    course = Course(target)
    release(course, [module_name])
    solved = notebooks.filled_in(
        notebooks.read(course.release_notebook(module_name)), notebooks.read(course.source_notebook(module_name))
    )
    for index in range(count):
        submission.write(course, f"student{index:04d}", module_name, solved)
    return course


def _all_full_marks(course: Course, count: int) -> None:
    rows = grades(course)
    if len(rows) != count or any(row.score != row.max_score for row in rows):
        raise CourseError(f"the benchmark expected {count} full marks in {course.root}, got {rows[:3]} ...")


def bench_grading(
    repo: Course, key: str = "01", count: int = 100, workers: int = 0, say: Callable[[str], None] = print
) -> GradingBench:
    module = resolve(repo, key)
    with tempfile.TemporaryDirectory(prefix="tt-bench-") as scratch:
        plain = _scratch(repo, Path(scratch) / "plain", PLAIN_CONFIG, module.name, count)
        config = (repo.root / "nbgrader_config.py").read_text(encoding="utf-8")
        ours = _scratch(repo, Path(scratch) / "course", config, module.name, count)
        say(f"{count} submissions of {module.name}; plain nbgrader first ...")
        started = time.perf_counter()
        result = nbgrader(plain, "autograde", module.name)
        plain_seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise CourseError(f"plain nbgrader failed: {log_tail(result)}")
        _all_full_marks(plain, count)
        say(f"  {plain_seconds:.1f}s; now course autograde ...")
        started = time.perf_counter()
        autograde(ours, module.name, options=Options(workers=workers), progress=True)
        course_seconds = time.perf_counter() - started
        _all_full_marks(ours, len(submitted_students(ours, module)))
    return GradingBench(count, plain_seconds, course_seconds)
