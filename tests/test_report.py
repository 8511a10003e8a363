"""``course report`` from a gradebook: the page's students table, needs-attention reasons and module summary.

The gradebook is written directly (tests/helpers.graded_class), so these tests need no grading; the page
itself is checked in a browser by tests/test_browser_instructor.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from helpers import copy_course, graded_class

from course.grading import cell_results, grades
from course.report import module_summaries, report


def test_report_page_lists_students_reasons_and_module_summary(tmp_path: Path) -> None:
    course = copy_course(tmp_path / "course")
    scores = {"ada": [1.0] * 20, "bob": [], "cy": [1.0]}  # share of each test cell's points: cy has the first
    graded_class(course, "01_tensor", scores, manual=frozenset({"cy"}))
    (course.submission_folder("dee", "01_tensor")).mkdir(parents=True)  # handed in, never graded
    (course.autograded_notebook("bob", "01_tensor")).unlink()

    result = report(course)
    page = result.page.read_text()
    students = page.split("<table class='sortable' id='students'>")[1]
    rows = re.findall(r"<tr( class='attention')?><td>(\w+)</td>", students)
    assert [name for _, name in rows] == ["ada", "bob", "cy", "dee"], rows
    assert [bool(mark) for mark, _ in rows] == [False, True, True, True]
    assert "01_tensor: no graded notebook in autograded/" in page
    assert "01_tensor: nbgrader asks for manual grading" in page
    assert "01_tensor: submitted but not graded" in page
    assert "3 submission(s) needing attention" in page and "4 students" in page

    (summary,) = module_summaries(grades(course), cell_results(course))
    assert summary.submissions == 3 and summary.median == 7.0
    assert summary.cells[0][0] == "matmul-loops-tests" and summary.cells[0][2] == 2 / 3  # ada and cy have it
    assert all(rate == 1 / 3 for _, _, rate, _ in summary.cells[1:])  # only ada
    assert "<td>matmul-loops-tests</td><td class='num'>7</td><td class='num'>67%</td>" in page
