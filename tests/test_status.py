"""``course status``: a learner's progress from what their commands left in notebooks/, table and page."""

from __future__ import annotations

from pathlib import Path

from helpers import learner_course, run_course

from course import learner, milestones
from course.modules import resolve


def test_status_shows_modules_checks_and_milestones(tmp_path: Path) -> None:
    course = learner_course(tmp_path / "course")
    learner.start(course, "01")
    learner.export(course, "01")
    tensor = resolve(course, "01")
    results = [
        learner.TestResult("matmul-loops-tests", 7, passed=True, reason=""),
        learner.TestResult("tensor-creation-tests", 8, passed=False, reason="NotImplementedError"),
    ]
    learner.record_check(course, tensor, results)
    perceptron = milestones.resolve_milestone(course, "1957")
    milestones.record_run(course, perceptron, reached=True, quick=False, plot=course.reports / "1957.png")

    shown = run_course(course, "status")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[1].split() == ["01_tensor", "yes", "yes", "1", "of", "2", "7/15"], lines[1]
    assert lines[2].split() == ["02_activations", "-", "-", "-", "-"], lines[2]
    assert any(line.split()[:2] == ["1957_perceptron", "reached,"] for line in lines), shown.stdout
    assert any(line.split()[:2] == ["1969_xor", "not"] for line in lines), shown.stdout

    page = (course.reports / "status.html").read_text()
    assert "<td>01_tensor</td><td>yes</td><td>yes</td><td>1 of 2</td><td>7/15</td>" in page
    assert "<img src='status.png'" in page and (course.reports / "status.png").stat().st_size > 1000
    assert "reached, " in page and "not run with --learner" in page
