"""An nbgrader feedback preprocessor that keeps hidden tests hidden.

nbgrader's feedback HTML shows each test cell as it ran when grading, hidden tests included,
and a failing hidden assert shows its source line in the traceback. This preprocessor, listed
in ``nbgrader_config.py`` for ``GenerateFeedback``, removes hidden-test regions from test cells
and replaces their tracebacks with the error's one-line message; it also removes the grading
guard that ``course.guard`` added.
"""

from __future__ import annotations

from typing import Any

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

from course.guard import is_guard_cell, without_guard_call
from course.notebooks import BEGIN_HIDDEN, is_test, without_hidden_tests

HIDDEN_NOTE = "# (hidden tests ran here when your work was graded)"


class ScrubHiddenTests(Preprocessor):
    """Remove hidden test sources and tracebacks from graded test cells."""

    enabled = Bool(True, help="nbconvert preprocessors are off by default; this one must always run").tag(
        config=True
    )

    def preprocess(self, nb: Any, resources: Any) -> tuple[Any, Any]:
        nb.cells = [cell for cell in nb.cells if not is_guard_cell(cell)]
        return super().preprocess(nb, resources)  # type: ignore[no-any-return,no-untyped-call]

    def preprocess_cell(self, cell: Any, resources: Any, index: int) -> tuple[Any, Any]:
        if not is_test(cell):
            return cell, resources
        cell.source = without_guard_call(cell.source)
        if BEGIN_HIDDEN in cell.source:
            cell.source = without_hidden_tests(cell.source) + "\n" + HIDDEN_NOTE
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources
