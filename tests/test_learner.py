"""A learner's loop through the real `course` command: start, fill in, export, check, next module."""

from __future__ import annotations

from pathlib import Path

import nbformat
from helpers import REPO, fill_in, run_course
from nbclient import NotebookClient

from course import notebooks
from course.modules import Course, discover
from course.package import export_notebook


def imported_file(course: Course, module: str) -> str:
    """Where a notebook opened in the workspace finds ``module``."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"import {module}\nprint({module}.__file__)")]
    NotebookClient(nb, timeout=60, resources={"metadata": {"path": str(course.workspace)}}).execute()
    return str(nb.cells[0].outputs[0]["text"]).strip()


def test_learner_flow(scratch_course: Course) -> None:
    course = scratch_course
    early = run_course(course, "start", "02")
    assert early.returncode == 2
    assert "01_tensor" in early.stderr and "course export 01" in early.stderr and "Traceback" not in early.stderr

    started = run_course(course, "start", "01")
    assert started.returncode == 0 and "notebooks/01_tensor.ipynb" in started.stdout
    copy = course.workspace / "01_tensor.ipynb"
    assert copy.read_bytes() == (course.release / "01_tensor" / "01_tensor.ipynb").read_bytes()

    not_exported = run_course(course, "check", "01")
    assert not_exported.returncode == 2 and "course export 01" in not_exported.stderr

    fill_in(course, "01_tensor")
    work = copy.read_bytes()
    again = run_course(course, "start", "tensor")
    assert again.returncode == 0 and "kept" in again.stdout
    assert copy.read_bytes() == work, "starting a module again must never overwrite the learner's copy"

    exported = run_course(course, "export", "01")
    assert exported.returncode == 0, exported.stderr
    assert (course.learner_package / "core" / "tensor.py").is_file()
    checked = run_course(course, "check", "01")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "FAIL" not in checked.stdout and "PASS" in checked.stdout
    assert "WARNING" not in checked.stderr, "the kernel's TCP warning reaches the learner"

    listed = run_course(course, "list").stdout.splitlines()
    assert listed[0].split()[:4] == ["module", "exports", "to", "started"] and "last check" in listed[0]
    tensor_row = next(line for line in listed if line.startswith("01_tensor"))
    assert tensor_row.split()[2:5] == ["yes", "yes", "passed:"], tensor_row
    assert next(line for line in listed if line.startswith("02_activations")).split()[2:] == ["-", "-", "-"]

    assert run_course(course, "start", "02").returncode == 0
    assert imported_file(course, "tinytorch.core.tensor").startswith(str(course.learner_package))

    assert run_course(course, "export", "02").returncode == 0
    stub = run_course(course, "check", "02")
    assert stub.returncode == 1 and "NotImplementedError" in stub.stdout

    fill_in(course, "02_activations")
    assert run_course(course, "export").returncode == 0
    solved = run_course(course, "check", "activations")
    assert solved.returncode == 0, solved.stdout + solved.stderr


def test_check_reports_why_a_test_failed(scratch_course: Course) -> None:
    course = scratch_course
    assert run_course(course, "start", "01").returncode == 0
    assert run_course(course, "export", "01").returncode == 0
    result = run_course(course, "check", "01")
    assert result.returncode == 1
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert failures and all("NotImplementedError" in line for line in failures)
    assert "0 of" in result.stdout


def test_export_refuses_a_notebook_that_redirects_nbdev(tmp_path: Path) -> None:
    module = discover(REPO)[0]
    nb = notebooks.read(module.source_notebook)
    setup = next(cell for cell in nb.cells if cell.source.startswith("#| default_exp"))
    setup.source = "#| default_exp ../../escaped"
    edited = tmp_path / "edited.ipynb"
    nbformat.write(nb, edited)
    assert not export_notebook(edited, module, tmp_path / "tinytorch")
    assert not list(tmp_path.rglob("escaped*"))
    assert export_notebook(module.source_notebook, module, tmp_path / "tinytorch")
    assert (tmp_path / "tinytorch" / "core" / "tensor.py").is_file()
