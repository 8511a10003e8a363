"""Bad input gets one clear sentence, not a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import REPO, run_course

from course.modules import Course, discover, imports_of, prerequisites, resolve


def test_unknown_module_names_the_modules_that_exist(scratch_course: Course) -> None:
    result = run_course(scratch_course, "start", "99")
    assert result.returncode == 2
    assert "no module '99'" in result.stderr and "01_tensor, 02_activations" in result.stderr
    assert "Traceback" not in result.stderr


def test_outside_a_course_says_where_to_run(tmp_path: Path) -> None:
    result = run_course(Course(tmp_path), "list")
    assert result.returncode == 2 and "nbgrader_config.py" in result.stderr


def test_modules_resolve_by_number_title_or_name() -> None:
    for key in ("1", "01", "tensor", "01_tensor", " Tensor "):
        assert resolve(REPO, key).name == "01_tensor"


def test_prerequisites_come_from_the_notebook_imports() -> None:
    tensor, activations = discover(REPO)[:2]
    assert tensor.exports == "core.tensor" and activations.exports == "core.activations"
    assert prerequisites(REPO, tensor) == []
    assert prerequisites(REPO, activations) == [tensor], "02's `if TYPE_CHECKING:` import of 03 is no prerequisite"
    layers, losses = discover(REPO)[2:4]
    assert prerequisites(REPO, losses) == [tensor, activations, layers], "04's loss classes are Modules"


def test_type_checking_imports_are_no_prerequisites() -> None:
    code = (
        "from tinytorch.core.tensor import Tensor\nif TYPE_CHECKING:  # mypy\n"
        "    from tinytorch.core.layers import ReLU\n"
        "\n    from tinytorch.core.losses import MSELoss\nx = 1\nfrom tinytorch.core.dataloader import DataLoader\n"
    )
    assert imports_of(code) == ("core.dataloader", "core.tensor")


def test_autograde_without_submissions_explains(scratch_course: Course) -> None:
    result = run_course(scratch_course, "autograde", "01_tensor")
    assert result.returncode == 2 and "submitted/" in result.stderr


def test_autograde_refuses_without_a_sandbox(scratch_course: Course) -> None:
    handed_in = scratch_course.submitted_notebook("someone", "01_tensor")
    handed_in.parent.mkdir(parents=True)
    shutil.copy2(scratch_course.release_notebook("01_tensor"), handed_in)
    no_bwrap = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # bubblewrap lives in /usr/bin
    result = subprocess.run(
        [sys.executable, "-m", "course.cli", "autograde", "01_tensor"],
        cwd=scratch_course.root,
        env=no_bwrap,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Refusing to grade without a sandbox" in result.stderr and "--no-sandbox" in result.stderr
    assert not scratch_course.autograded.exists()
