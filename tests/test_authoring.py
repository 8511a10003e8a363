"""The draft-to-notebook converter writes the nbgrader metadata grading depends on."""

from __future__ import annotations

import pytest

from course.authoring import DraftError, draft_to_notebook

DRAFT = """\
# %% [markdown]
# # Title
# Some *text*.
# %%
#| default_exp core.thing
import numpy as np
# %% solution id=thing
def thing() -> int:
    ### BEGIN SOLUTION
    return 1
    ### END SOLUTION
# %% tests id=thing-tests points=5
assert thing() == 1
"""


def test_cells_get_nbgrader_metadata() -> None:
    nb = draft_to_notebook(DRAFT, "01_thing")
    kinds = [(c.cell_type, c.metadata["nbgrader"]["grade_id"]) for c in nb.cells]
    assert kinds == [("markdown", "01_thing-md-00"), ("code", "01_thing-code-01"), ("code", "thing"),
                     ("code", "thing-tests")]
    markdown, setup, solution, tests = (c.metadata["nbgrader"] for c in nb.cells)
    assert nb.cells[0].source == "# Title\nSome *text*."
    assert markdown["locked"] and setup["locked"] and not markdown["grade"]
    assert solution["solution"] and not solution["locked"] and not solution["grade"]
    assert tests["grade"] and tests["locked"] and tests["points"] == 5 and not tests["solution"]


@pytest.mark.parametrize(
    ("header", "problem"),
    [("# %% solution", "stable id"), ("# %% tests id=t", "points"), ("# %% banana", "unknown word")],
)
def test_bad_headers_are_explained(header: str, problem: str) -> None:
    with pytest.raises(DraftError, match=problem):
        draft_to_notebook(header + "\nx = 1\n", "01_thing")


def test_duplicate_ids_are_rejected() -> None:
    with pytest.raises(DraftError, match="duplicate"):
        draft_to_notebook("# %% solution id=a\nx=1\n# %% solution id=a\ny=2\n", "01_thing")
