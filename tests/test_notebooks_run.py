"""Every source notebook runs top to bottom with its solutions, tests included."""

from __future__ import annotations

import pytest
from helpers import REPO
from nbclient import NotebookClient

from course import notebooks
from course.modules import Module, discover

MODULES = discover(REPO)


@pytest.mark.parametrize("module", MODULES, ids=[m.name for m in MODULES])
def test_source_notebook_runs_top_to_bottom(module: Module) -> None:
    nb = notebooks.read(module.source_notebook)
    # No wall-clock assert: a shared machine makes any bound flaky. The per-cell timeout only stops a hang;
    # how long a module takes is measured by `course bench`, not tested.
    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(module.source_notebook.parent)}}).execute()
    for cell in nb.cells:
        if notebooks.is_test(cell):
            stderr = [o for o in cell.outputs if o.get("name") == "stderr"]
            assert not stderr, f"{notebooks.grade_id(cell)} writes to stderr, which nbgrader grades as 0: {stderr}"
