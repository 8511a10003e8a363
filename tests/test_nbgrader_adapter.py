"""The one place the course reads nbgrader's log text, tested against nbgrader's own message.

If an nbgrader upgrade changes what it logs for a locked SQLite gradebook, this test names it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from helpers import copy_course

from course import notebooks, submission
from course.grading import gradebook_was_locked, nbgrader, release


def test_nbgrader_reports_a_locked_gradebook_the_way_the_adapter_reads_it(tmp_path: Path) -> None:
    course = copy_course(tmp_path / "course")
    release(course, ["01_tensor"])
    submission.write(course, "someone", "01_tensor", notebooks.read(course.release_notebook("01_tensor")))
    holder = sqlite3.connect(course.root / "gradebook.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another grader in the middle of a write
        result = nbgrader(course, "autograde", "01_tensor", "--student", "someone")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    log = result.stdout + result.stderr
    assert result.returncode != 0, log[-2000:]
    assert gradebook_was_locked(log), f"nbgrader's log no longer says the gradebook was locked:\n{log[-2000:]}"
    assert not gradebook_was_locked("[AutogradeApp | INFO] Autograding /x/submitted/someone/01_tensor")
