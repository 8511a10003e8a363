"""A learner in JupyterLab (``course lab``), in a real browser: fill in an exercise, run its test, Validate.

The learner has done every other exercise of module 01 and now writes ``matmul_loops``: first a right
answer (the visible test cell runs without error, nbgrader's Validate says the notebook passes), then a
wrong one (the test cell shows the assertion's message, Validate says which cell failed). The test reads
what the page shows: prompts, output areas, the Validate dialog, the menus a learner has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from browser import chromium_page, jupyter_server, require_browser, screenshot
from helpers import REPO, copy_course

from course import learner, notebooks
from course.modules import Course

pytestmark = [pytest.mark.xdist_group("browser")]

MODULE = "01_tensor"
EXERCISE = "matmul-loops"
RIGHT = """\
#| export
def matmul_loops(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> npt.NDArray[Any]:
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"matmul_loops: expects 2-D arrays, got {a.shape} and {b.shape}")
    (n, k), (k2, m) = a.shape, b.shape
    if k != k2:
        raise ValueError(f"matmul_loops: shapes {a.shape} and {b.shape} do not align ({k} != {k2})")
    out = np.zeros((n, m), dtype=np.result_type(a, b))
    for i in range(n):
        for j in range(m):
            for p in range(k):
                out[i, j] += a[i, p] * b[p, j]
    return out
"""
WRONG = RIGHT.replace("a[i, p] * b[p, j]", "a[i, p] + b[p, j]")


def learner_with_one_exercise_left(root: Path) -> Course:
    """A course where the learner started 01 and answered every exercise but ``matmul_loops`` (still the stub)."""
    course = copy_course(root)
    learner.start(course, MODULE)
    copy = course.workspace / f"{MODULE}.ipynb"
    release = notebooks.read(copy)
    stub = next(cell.source for cell in release.cells if notebooks.grade_id(cell) == EXERCISE)
    source = notebooks.read(REPO.source_notebook(MODULE))
    nbformat.write(notebooks.filled_in(release, source, {EXERCISE: stub}), copy)
    return course


def code_cell(page: Any, text: str) -> Any:
    return page.locator(".jp-CodeCell").filter(has_text=text).first


PROMPT_CHANGED = (
    "([cell, before]) => { const p = cell.querySelector('.jp-InputPrompt').innerText;"
    " return /\\[\\d+\\]/.test(p) && p !== before; }"
)


def run_cell(page: Any, cell: Any) -> None:
    """Select ``cell``, run it with Shift+Enter as a learner does, and wait until its prompt shows a new number."""
    before = cell.locator(".jp-InputPrompt").inner_text()
    cell.locator(".jp-InputPrompt").click()
    page.keyboard.press("Shift+Enter")
    page.wait_for_function(PROMPT_CHANGED, arg=[cell.element_handle(), before], timeout=120_000)


def answer_and_run(page: Any, answer: str) -> Any:
    """Type ``answer`` into the exercise cell, run it and the test cell below it; the test cell, once run."""
    exercise = code_cell(page, "def matmul_loops(")
    exercise.locator(".cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(answer)
    assert answer.splitlines()[-2].strip() in exercise.locator(".cm-content").inner_text()
    page.keyboard.press("Escape")  # back to command mode
    run_cell(page, exercise)
    test = exercise.locator("xpath=following-sibling::div[contains(@class, 'jp-CodeCell')][1]")
    run_cell(page, test)
    return test


def validate(page: Any) -> str:
    """Click nbgrader's Validate button; the text of the dialog it opens (then closed)."""
    page.get_by_role("button", name="Validate").click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator(".validation-success, .validation-failed").wait_for(timeout=120_000)
    dialog.locator(".jp-Dialog-body > *").last.scroll_into_view_if_needed()  # the traceback's last line
    return str(dialog.inner_text())


def test_learner_fills_in_runs_and_validates(tmp_path: Path) -> None:
    require_browser()
    course = learner_with_one_exercise_left(tmp_path / "course")
    with jupyter_server(course, "learner", tmp_path / "lab.log") as server, chromium_page() as page:
        page.goto(server.page(f"/lab/tree/notebooks/{MODULE}.ipynb"))
        page.locator(".jp-Notebook .jp-CodeCell").first.wait_for()
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()

        # A learner's JupyterLab: the Validate button and nbgrader's assignment list; no instructor tools, no news.
        page.get_by_text("Nbgrader", exact=True).click()
        menu = page.locator(".lm-Menu").last.inner_text()
        page.keyboard.press("Escape")
        assert "Assignment List" in menu, menu
        assert "Formgrader" not in menu and "Course List" not in menu, menu
        sidebar_tabs = " ".join(page.locator(".lm-TabBar-tab").evaluate_all("t => t.map(e => e.title)"))
        assert "Create Assignment" not in sidebar_tabs, sidebar_tabs
        assert page.get_by_text("Would you like to get notified about official Jupyter news?").count() == 0

        # Run everything above the exercise (imports, earlier answers), then the exercise and its test.
        code_cell(page, "YOUR CODE HERE").locator(".jp-InputPrompt").click()
        page.get_by_text("Run", exact=True).click()
        page.get_by_text("Run All Above Selected Cell").click()
        above = "xpath=preceding-sibling::div[contains(@class, 'jp-CodeCell')][1]"
        setup = code_cell(page, "def matmul_loops(").locator(above)
        page.wait_for_function(PROMPT_CHANGED, arg=[setup.element_handle(), "[ ]:"], timeout=120_000)
        test = answer_and_run(page, RIGHT)
        test.scroll_into_view_if_needed()
        screenshot(page, "learner-1-test-passes")
        assert test.locator(".jp-OutputArea-output").count() == 0, test.locator(".jp-OutputArea").inner_text()

        passed = validate(page)
        screenshot(page, "learner-2-validate-passes")
        assert "Success! Your notebook passes all the tests." in passed, passed
        page.keyboard.press("Escape")

        test = answer_and_run(page, WRONG)
        test.scroll_into_view_if_needed()
        screenshot(page, "learner-3-test-fails")
        output = test.locator(".jp-OutputArea").inner_text()
        assert "AssertionError" in output and "wrong values" in output, output

        failed = validate(page)
        screenshot(page, "learner-4-validate-fails")
        assert "The following cell failed:" in failed and "wrong values" in failed, failed
        assert "Success!" not in failed
        page.keyboard.press("Escape")
