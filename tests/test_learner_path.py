"""The whole learner path, for every released module: start, fill in, export, check, then a milestone.

A learner's ``course check`` runs a module's visible tests against the package they exported, not
against the notebook; a test that graded fine once failed there (it used a private helper that
``from module import *`` leaves out). This walk catches that for every module, present and future.
All tests here share one walked course, so they run on one xdist worker.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import REPO, fill_in, learner_course, run_course, skip_without_data

from course.milestones import Milestone, discover_milestones, missing_modules
from course.modules import Course, Module, discover

MODULES = [m for m in discover(REPO) if (REPO.release / m.name / f"{m.name}.ipynb").is_file()]
pytestmark = pytest.mark.xdist_group("learner_path")


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> Course:
    """A course in which a learner started, solved and exported every released module, in order."""
    course = learner_course(tmp_path_factory.mktemp("learner-path") / "course")
    for module in MODULES:
        key = f"{module.number:02d}"
        started = run_course(course, "start", key)
        assert started.returncode == 0, f"course start {key}: {started.stdout}{started.stderr}"
        fill_in(course, module.name)
        exported = run_course(course, "export", key)
        assert exported.returncode == 0, f"course export {key}: {exported.stdout}{exported.stderr}"
    return course


@pytest.mark.parametrize("module", MODULES, ids=[m.name for m in MODULES])
def test_every_visible_test_passes_on_a_solved_module(walked: Course, module: Module) -> None:
    checked = run_course(walked, "check", f"{module.number:02d}")
    failures = [line for line in checked.stdout.splitlines() if line.startswith("FAIL")]
    assert checked.returncode == 0 and not failures, f"course check {module.name}:\n{checked.stdout}{checked.stderr}"
    assert re.search(rf"(\d+) of \1 visible test cells passed for {module.name}", checked.stdout), checked.stdout
    noise = [line for line in checked.stderr.splitlines() if "WARNING" in line or "Traceback" in line]
    assert not noise, f"course check printed noise the learner cannot act on:\n{checked.stderr}"


def test_the_1986_milestone_reaches_its_target_on_the_learners_package(walked: Course, tmp_path: Path) -> None:
    if not {"01_tensor", "08_training"} <= {m.name for m in MODULES}:
        pytest.skip("the 1986 milestone needs modules 01-08")
    ran = run_course(walked, "milestone", "1986", "--learner", "--out", str(tmp_path))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"with tinytorch from {walked.learner_package}" in ran.stdout
    accuracy = re.search(r"test accuracy (\d+\.\d+)%", ran.stdout)
    assert accuracy and float(accuracy[1]) >= 97.0, ran.stdout


QUICK_MILESTONES = [m for m in discover_milestones(REPO) if m.has_quick_run]


@pytest.mark.parametrize("milestone", QUICK_MILESTONES, ids=[m.name for m in QUICK_MILESTONES])
def test_quick_milestones_reach_their_targets_on_the_learners_package(
    walked: Course, milestone: Milestone, tmp_path: Path
) -> None:
    """The CNN (1998) and the GPT (2017) train with the learner's own package, in their short runs."""
    skip_without_data(milestone.name)
    if missing_modules(walked, milestone):
        pytest.skip(f"{milestone.name} needs modules not released yet: {missing_modules(walked, milestone)}")
    ran = run_course(walked, "milestone", milestone.name[:4], "--learner", "--quick", "--out", str(tmp_path))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"with tinytorch from {walked.learner_package}" in ran.stdout
    assert re.search(rf"{milestone.name}: .+ -> REACHED", ran.stdout), ran.stdout
