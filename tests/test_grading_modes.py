"""Prerequisites when grading module 02: the reference 01 by default, the student's own 01 when cumulative."""

from __future__ import annotations

import pytest
from helpers import REPO

from course import notebooks, submission
from course.autograde import Options, Status, autograde
from course.grading import release
from course.modules import Course, discover

pytestmark = pytest.mark.xdist_group("grading-modes")


def submit(course: Course, student: str, name: str, solved: bool) -> None:
    release_nb = notebooks.read(course.release_notebook(name))
    source_nb = notebooks.read(REPO.source_notebook(name))
    submission.write(course, student, name, notebooks.filled_in(release_nb, source_nb) if solved else release_nb)


def test_cumulative_mode_grades_against_the_students_own_earlier_modules(scratch_course: Course) -> None:
    course = scratch_course
    release(course)
    tensor, activations = (m.name for m in discover(course)[:2])
    submit(course, "whole", tensor, solved=True)
    submit(course, "whole", activations, solved=True)
    submit(course, "no-tensor", tensor, solved=False)
    submit(course, "no-tensor", activations, solved=True)
    submit(course, "only-02", activations, solved=True)

    full = sum(
        float(notebooks.grader_meta(cell)["points"])
        for cell in notebooks.read(course.source_notebook(activations)).cells
        if notebooks.is_test(cell)
    )
    reference = {s.student: s for s in autograde(course, activations, options=Options(workers=2))}
    assert {name: s.score for name, s in reference.items()} == {"whole": full, "no-tensor": full, "only-02": full}

    own = {s.student: s for s in autograde(course, activations, options=Options(force=True, cumulative=True))}
    assert own["whole"].score == full and own["whole"].status is Status.GRADED
    # Their own 01 is the untouched stub, so 02 cannot work (at most a test that needs no Tensor passes).
    assert own["no-tensor"].score is not None and own["no-tensor"].score < 10.0, own["no-tensor"]
    assert own["only-02"].status is Status.ATTENTION and "no submission of 01_tensor" in own["only-02"].reason
