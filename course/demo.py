"""``make demo``: a small class played through the whole course loop in its own folder.

Three students submit every module: ada submits the solutions, bob the untouched release,
and cy the solutions except for a softmax that skips the max subtraction, which passes the
visible tests and fails the hidden ones on large logits. For module 20's capstone, ada hands in a
trained int8 model with its measured metrics, bob a malformed metrics.json and no model (needs
attention), and cy ada's model with inflated claims (flagged); ``course capstone`` measures them and
the report ranks them. The demo releases, collects, auto-grades, writes feedback, exports the grades
to CSV, prints a table and saves a plot.
It works in a folder of its own (``demo-class/``), so it never touches a real gradebook.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course import capstone, notebooks, submission
from course.autograde import Submission, autograde
from course.capstone import CAPSTONE
from course.grading import feedback, release
from course.modules import Course, CourseError, discover
from course.report import Report, report

SENTINEL = ".tinytorch-demo"

NAIVE_SOFTMAX_BODY = """\
exps = np.exp(x.data)
return record_op(SOFTMAX, exps / exps.sum(axis=dim, keepdims=True), (x,), output=None, dim=dim)"""


def replace_solution(source: str, body: str) -> str:
    """A solved cell whose (first) solution region holds ``body``, indented like the markers."""
    out: list[str] = []
    replaced = False
    lines = iter(source.splitlines())
    for line in lines:
        if line.strip() == notebooks.BEGIN_SOLUTION and not replaced:
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + body_line if body_line else "" for body_line in body.splitlines())
            for skipped in lines:
                if skipped.strip() == notebooks.END_SOLUTION:
                    break
            replaced = True
        elif line.strip() not in (notebooks.BEGIN_SOLUTION, notebooks.END_SOLUTION):
            out.append(line)
    return "\n".join(out)


@dataclass(frozen=True)
class DemoStudent:
    name: str
    plays: str
    answers: Callable[[str, Any], dict[str, str] | None]  # (assignment, source nb) -> answers


def _solutions(assignment: str, source: Any) -> dict[str, str] | None:
    return {}


def _untouched(assignment: str, source: Any) -> dict[str, str] | None:
    return None


def _naive_softmax(assignment: str, source: Any) -> dict[str, str] | None:
    for cell in source.cells:
        if notebooks.grade_id(cell) == "softmax":
            return {"softmax": replace_solution(cell.source, NAIVE_SOFTMAX_BODY)}
    return {}


STUDENTS = (
    DemoStudent("ada", "submits the solutions and a trained int8 model with its measured metrics", _solutions),
    DemoStudent("bob", "submits the untouched release and a broken metrics.json, no model", _untouched),
    DemoStudent(
        "cy", "solutions, but a softmax that overflows on large logits, and a model with inflated claims",
        _naive_softmax,
    ),
)


def capstone_files(demo: Course) -> None:
    """Module 20's files: ada's honest int8 MLP, bob's malformed metrics, cy's model with better claims than it has."""
    import numpy as np

    from tinytorch.capstone import capstone_split, measure, save_submission, train_classifier
    from tinytorch.core.layers import Linear, ReLU, Sequential
    from tinytorch.perf.quantization import quantize_model

    x_train, y_train, _, _ = capstone_split()
    generator = np.random.default_rng(0)
    model = Sequential(Linear(64, 16, generator=generator), ReLU(), Linear(16, 10, generator=generator))
    train_classifier(model, x_train, y_train)
    quantized = quantize_model(model)
    honest = measure(quantized)
    save_submission(quantized, demo.submission_folder("ada", CAPSTONE), {**honest, "description": "int8 MLP 64-16-10"})
    inflated = {**honest, "accuracy": 0.999, "size_bytes": 100}
    save_submission(quantized, demo.submission_folder("cy", CAPSTONE), inflated)
    bob = demo.submission_folder("bob", CAPSTONE)
    bob.mkdir(parents=True, exist_ok=True)
    (bob / "metrics.json").write_text('{"accuracy": "very high"}\n', encoding="utf-8")


@dataclass(frozen=True)
class DemoResult:
    course: Course
    submissions: list[Submission]
    feedback: Path
    report: Report


def prepare_folder(course: Course, target: Path) -> Course:
    """A fresh demo course in ``target``; only a folder an earlier demo made is ever removed."""
    if target.exists():
        if not (target / SENTINEL).is_file():
            raise CourseError(f"{target} exists and was not made by the demo: choose another folder with --dir.")
        shutil.rmtree(target)
    target.mkdir(parents=True)
    (target / SENTINEL).write_text("made by `course demo`; safe to delete\n", encoding="utf-8")
    shutil.copy2(course.root / "nbgrader_config.py", target / "nbgrader_config.py")
    shutil.copytree(course.source, target / "source")
    return Course(target)


def submit(demo: Course, student: DemoStudent) -> None:
    """Write the student's notebooks into ``submitted/<student>/<assignment>/``."""
    for module in discover(demo):
        release_nb = notebooks.read(demo.release_notebook(module.name))
        source_nb = notebooks.read(module.source_notebook)
        answers = student.answers(module.name, source_nb)
        handed_in = release_nb if answers is None else notebooks.filled_in(release_nb, source_nb, answers)
        submission.write(demo, student.name, module.name, handed_in)


def run_demo(course: Course, target: Path, say: Callable[[str], None] = print) -> DemoResult:
    demo = prepare_folder(course, target)
    say(f"Demo class in {target}: releasing {len(discover(demo))} modules with nbgrader ...")
    release(demo)
    for student in STUDENTS:
        say(f"  {student.name} {student.plays}")
        submit(demo, student)
    has_capstone = any(module.name == CAPSTONE for module in discover(demo))
    if has_capstone:
        capstone_files(demo)
    submissions: list[Submission] = []
    for module in discover(demo):
        say(f"Auto-grading {module.name} ...")
        for graded in autograde(demo, module.name):
            say(f"  {graded.student:<5} {graded.status:<16} {graded.score}/{graded.max_score} {graded.reason}")
            submissions.append(graded)
        feedback(demo, module.name)
    if has_capstone:
        say("Measuring the capstone models (course capstone) ...")
        for measured, _ in capstone.grade(demo):
            say(f"  {capstone.describe(measured)}")
    result = DemoResult(demo, submissions, demo.feedback, report(demo))
    say("")
    say(result.report.table)
    say("")
    say(f"Grades CSV:   {result.report.csv}")
    say(f"Grades plot:  {result.report.plot}")
    say(f"Report page:  {result.report.page} (score distributions, which tests fail most)")
    say(f"Feedback:     {result.feedback}/<student>/<module>/<module>.html")
    return result
