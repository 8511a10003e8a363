"""The demo class through nbgrader: full, zero and partial grades; feedback; reports; nothing overwritten."""

from __future__ import annotations

import html
import re

import pytest
from helpers import REPO, region_lines

from course import notebooks
from course.autograde import Status, autograde
from course.demo import DemoResult
from course.grading import grades
from course.modules import discover

pytestmark = pytest.mark.xdist_group("demo-class")
MODULE_NAMES = [m.name for m in discover(REPO)]


def totals(demo: DemoResult) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for row in grades(demo.course):
        got, of = out.get(row.student, (0.0, 0.0))
        out[row.student] = (got + row.score, of + row.max_score)
    return out


def test_every_submission_is_graded(demo_class: DemoResult) -> None:
    assert {(s.student, s.assignment) for s in demo_class.submissions} == {
        (student, name) for student in ("ada", "bob", "cy") for name in MODULE_NAMES
    }
    assert all(s.status is Status.GRADED for s in demo_class.submissions), demo_class.submissions


def test_solution_full_release_zero_naive_softmax_partial(demo_class: DemoResult) -> None:
    scores = totals(demo_class)
    ada, bob, cy = scores["ada"], scores["bob"], scores["cy"]
    assert ada[0] == ada[1] > 0, f"the solutions should get full marks, got {ada}"
    assert bob[0] == 0, f"the untouched release should get 0, got {bob}"
    assert 0 < cy[0] < cy[1], f"the naive softmax should lose some points, got {cy}"


def test_naive_softmax_loses_only_the_softmax_cell(demo_class: DemoResult) -> None:
    from nbgrader.api import Gradebook

    with Gradebook(demo_class.course.gradebook_url) as gradebook:
        lost = [
            grade.cell.name
            for grade in gradebook.find_submission_notebook("02_activations", "02_activations", "cy").grades
            if grade.score < grade.max_score
        ]
    assert lost == ["softmax-tests"]


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_every_test_cell_fails_on_the_stub(demo_class: DemoResult, name: str) -> None:
    from nbgrader.api import Gradebook

    with Gradebook(demo_class.course.gradebook_url) as gradebook:
        stub = gradebook.find_submission_notebook(name, name, "bob")
        passing = [grade.cell.name for grade in stub.grades if grade.score > 0]
    assert passing == [], f"these test cells pass on the untouched stub: {passing}"


def test_feedback_hides_hidden_tests(demo_class: DemoResult) -> None:
    for name in MODULE_NAMES:
        lines = region_lines(notebooks.read(REPO.source / name / f"{name}.ipynb"))
        hidden_only = lines["hidden"] - lines["public"] - lines["solution"]
        assert len(hidden_only) > 20
        for student in ("ada", "bob", "cy"):
            page = (demo_class.feedback / student / name / f"{name}.html").read_text(encoding="utf-8")
            text = html.unescape(re.sub(r"<[^>]+>", "", page))  # highlighted code is split into spans
            assert "HIDDEN TESTS" not in text and "course_guard" not in text
            shown = {line.strip() for line in text.splitlines()}
            leaked = sorted(hidden_only & shown)
            assert not leaked, f"feedback for {student}/{name} shows hidden test lines: {leaked[:3]}"


def test_report_has_csv_table_and_plot(demo_class: DemoResult) -> None:
    report = demo_class.report
    from course.grading import read_csv

    rows = read_csv(report.csv)
    assert {row["student_id"] for row in rows} == {"ada", "bob", "cy"}
    for plot in (report.plot, report.distributions, report.pass_rates):
        assert plot.read_bytes().startswith(b"\x89PNG")
    page = report.page.read_text()
    assert "softmax-tests" in page and "grades.csv" in page and "pass_rates.png" in page
    assert "ada" in report.table and "total" in report.table


def test_pass_rates_put_the_failed_softmax_first(demo_class: DemoResult) -> None:
    from course.grading import cell_results
    from course.report import pass_rates

    rates = pass_rates(cell_results(demo_class.course))
    assert rates[0][:3] == ("02_activations", "softmax-tests", 1 / 3)
    assert all(rate == 2 / 3 for _, _, rate, _ in rates[1:])


def test_grading_again_keeps_existing_grades(demo_class: DemoResult) -> None:
    before = grades(demo_class.course)
    again = autograde(demo_class.course, MODULE_NAMES[0])
    assert all("kept" in s.reason for s in again)
    assert grades(demo_class.course) == before
