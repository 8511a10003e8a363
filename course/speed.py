"""Grading-time preprocessor: skip the locked code after the last test cell.

No grade depends on the cells after a module's last test cell (its systems view: timings,
memory measurements, plots), and they are the slowest part of a module. While grading, their
source is replaced by a comment, so a submission is graded in a few seconds.
"""

from __future__ import annotations

from typing import Any

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

from course.notebooks import grader_meta, is_test

SKIPPED = "# (not run while grading: no grade depends on this cell)"


class SkipUngradedTail(Preprocessor):
    """Blank the locked code cells that come after the last test cell."""

    enabled = Bool(True, help="nbconvert preprocessors are off by default; this one must always run").tag(
        config=True
    )

    def preprocess(self, nb: Any, resources: Any) -> tuple[Any, Any]:
        tests = [index for index, cell in enumerate(nb.cells) if is_test(cell)]
        if not tests:
            return nb, resources
        for cell in nb.cells[tests[-1] + 1 :]:
            if cell.cell_type == "code" and grader_meta(cell).get("locked"):
                cell.source = SKIPPED
        return nb, resources
