"""An instructor in a real browser: formgrader (``course formgrader``) after ``course autograde``, and the report page.

A class of two hands in module 01 (ada the solutions, bob the untouched notebook); ``course autograde
--no-sandbox`` grades it (the sandbox is tested elsewhere; here the browser is). Formgrader must show the
module, both students and their scores as the gradebook holds them, and open ada's graded submission in
its manual-grading view. ``course report``'s page is then checked in the same browser, for this class
(charts render, nothing overflows, every link resolves) and for a class of 3,000 (search, sort, layout).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from browser import chromium_page, jupyter_server, require_browser, screenshot
from helpers import REPO, copy_course, run_course

from course import notebooks, submission
from course.grading import CellResult, GradeRow, grades
from course.modules import Course
from course.report import write_page

pytestmark = [pytest.mark.xdist_group("browser")]

MODULE = "01_tensor"


def graded_class(root: Path) -> Course:
    course = copy_course(root)
    released = run_course(course, "release", MODULE)
    assert released.returncode == 0, released.stdout + released.stderr
    release = notebooks.read(course.release_notebook(MODULE))
    submission.write(course, "ada", MODULE, notebooks.filled_in(release, notebooks.read(REPO.source_notebook(MODULE))))
    submission.write(course, "bob", MODULE, release)
    steps: list[list[str]] = [["autograde", MODULE, "--no-sandbox"], ["feedback", MODULE], ["report"]]
    for step in steps:
        done = run_course(course, *step)
        assert done.returncode == 0, done.stdout + done.stderr
    return course


def table_rows(page: Any, showing: str, selector: str = "table tbody tr") -> list[str]:
    """The text of each row of the page's table, cells separated by tabs, once a row shows ``showing``.

    Formgrader fills its tables after the page loaded ("Loading, please wait...").
    """
    page.locator(selector, has_text=showing).first.wait_for()
    return [str(text) for text in page.locator(selector).all_inner_texts()]


def check_report_page(page: Any) -> list[str]:
    """Charts render at the page's width, the page never scrolls sideways, and every link leads to a file.

    Returns the links' addresses.
    """
    page.wait_for_load_state("load")
    images = page.locator("img").evaluate_all(
        "imgs => imgs.map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0,"
        " i.getBoundingClientRect().right <= document.documentElement.clientWidth])"
    )
    assert len(images) == 3 and all(loaded and fits for _, loaded, fits in images), images
    width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1], f"the page scrolls sideways: {width[0]} px of content in {width[1]} px"
    links = page.locator("a[href]").evaluate_all("links => links.map(a => a.href)")
    missing = [link for link in links if not Path(unquote(urlparse(link).path)).is_file()]
    assert not missing, missing
    return [str(link) for link in links]


def test_formgrader_shows_the_graded_class_and_the_report_page(tmp_path: Path) -> None:
    require_browser()
    course = graded_class(tmp_path / "course")
    scores = {row.student: f"{row.score:g} / {row.max_score:g}" for row in grades(course)}
    assert scores == {"ada": "100 / 100", "bob": "0 / 100"}, scores  # what formgrader must show
    with jupyter_server(course, "instructor", tmp_path / "formgrader.log") as server, chromium_page() as page:
        page.goto(server.page("/formgrader"))
        assignments = table_rows(page, MODULE)
        screenshot(page, "instructor-1-formgrader-assignments")
        tensor = next(row for row in assignments if row.startswith(MODULE))
        assert tensor.split("\t")[-3].strip() == "2", tensor  # the "# Submissions" column

        page.goto(server.page(f"/formgrader/manage_submissions/{MODULE}"))
        submissions = table_rows(page, "bob")
        screenshot(page, "instructor-2-formgrader-submissions")
        for student, score in scores.items():
            row = next(row for row in submissions if f"\t{student}\t" in row)
            assert "graded" in row and score in row, (student, row)

        page.goto(server.page("/formgrader/manage_students"))
        students = table_rows(page, "bob")
        assert {student: any(student in r and score in r for r in students) for student, score in scores.items()} == {
            "ada": True,
            "bob": True,
        }, students

        # Manual grading: the notebook's submissions, then ada's graded notebook with its test cells' scores.
        page.goto(server.page(f"/formgrader/gradebook/{MODULE}/{MODULE}"))
        listed = table_rows(page, "Submission #2")
        assert sorted(row.split("\t")[2] for row in listed) == sorted(scores.values()), listed
        page.locator("table tbody tr", has_text="100 / 100").locator("a").first.click()
        page.wait_for_url("**/formgrader/submissions/**")
        test_cell = page.locator(".nbgrader_cell", has=page.locator("input.score#matmul-loops-tests"))
        test_cell.scroll_into_view_if_needed()
        score = test_cell.locator("input.score")
        # Formgrader shows the auto-graded score as the box's placeholder (a manual score would be its value).
        page.wait_for_function("box => box.placeholder !== ''", arg=score.element_handle())
        screenshot(page, "instructor-3-formgrader-manual-grading")
        assert score.get_attribute("placeholder") == "7" and "/ 7" in test_cell.locator(".panel-heading").inner_text()

        page.goto(f"file://{course.reports / 'index.html'}")
        links = check_report_page(page)
        screenshot(page, "instructor-4-report-page")
        feedback = [f"feedback/{student}/{MODULE}/{MODULE}.html" for student in ("ada", "bob")]
        assert sorted(link.split("/course/")[-1] for link in links) == sorted(["reports/grades.csv", *feedback]), links
        students_table = table_rows(page, "bob", "#students tbody tr")
        assert [row.split("\t")[0] for row in students_table] == ["ada", "bob"], students_table
        assert "100/100" in students_table[0] and "0/100" in students_table[1]
        page.locator("#students a", has_text="100/100").click()  # ada's feedback, hidden tests scrubbed
        assert "matmul_loops" in page.locator("body").inner_text()
        assert page.url.endswith(f"feedback/ada/{MODULE}/{MODULE}.html"), page.url


def test_report_page_for_a_class_of_3000(tmp_path: Path) -> None:
    """The page written for 3,000 students fits the window, and its table searches and sorts."""
    require_browser()
    course = copy_course(tmp_path / "course")
    shutil.rmtree(course.source)  # the page needs the release notebooks only (test cells' order)
    rng = random.Random(0)
    cells_of = {
        module: [
            (notebooks.grade_id(cell), float(notebooks.grader_meta(cell)["points"]))
            for cell in notebooks.read(course.release_notebook(module)).cells
            if notebooks.is_test(cell)
        ]
        for module in ("01_tensor", "02_activations", "03_layers")
    }
    rows: list[GradeRow] = []
    cells: list[CellResult] = []
    for number in range(3000):
        student = f"student{number:04d}"
        for module, tests in cells_of.items():
            got: list[tuple[str, float, float]] = [
                (name, points if rng.random() < 0.8 else 0.0, points) for name, points in tests
            ]
            cells += [CellResult(student, module, name, score, points) for name, score, points in got]
            rows.append(GradeRow(student, module, sum(s for _, s, _ in got), sum(p for _, _, p in got)))
    reasons = {("student0042", "02_activations"): ["submitted but not graded (refused or crashed)"]}
    page_path, _ = write_page(course, rows, cells, reasons)

    with chromium_page() as page:
        page.goto(f"file://{page_path}")
        assert page.locator("#students tbody tr").count() == 3000
        check_report_page(page)
        assert "3000 students, 3 modules, 1 submission(s) needing attention" in page.locator("body").inner_text()

        totals: dict[str, tuple[float, float]] = {}
        for row in rows:
            score, out_of = totals.get(row.student, (0.0, 0.0))
            totals[row.student] = (score + row.score, out_of + row.max_score)
        percents = sorted(100 * score / out_of for score, out_of in totals.values())
        percent_column = "#students tbody tr td:nth-last-child(2)"  # the last column holds the reasons
        shown_percents = "cells => cells.map(c => parseFloat(c.dataset.value))"

        page.locator("#students thead th", has_text="%").click()
        ascending = page.locator(percent_column).evaluate_all(shown_percents)
        assert ascending == pytest.approx(percents, abs=1e-3), "the % column sorts from the lowest up"
        page.locator("#students thead th", has_text="%").click()
        descending = page.locator(percent_column).evaluate_all(shown_percents)
        assert descending == pytest.approx(percents[::-1], abs=1e-3), "a second click sorts from the highest down"
        screenshot(page, "report-3000-sorted")

        page.locator("#search").fill("student0042")
        visible = page.locator("#students tbody tr:not([hidden])")
        assert visible.count() == 1 and "submitted but not graded" in visible.inner_text()
        assert page.locator("#shown").inner_text() == "1"
        screenshot(page, "report-3000-search")
