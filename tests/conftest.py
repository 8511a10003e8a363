"""Shared fixtures: scratch copies of the course, and one graded demo class."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import REPO, copy_course

from course.demo import DemoResult, run_demo
from course.modules import Course


@pytest.fixture
def scratch_course(tmp_path: Path) -> Course:
    return copy_course(tmp_path / "course")


@pytest.fixture(scope="session")
def demo_class(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    """The demo class, graded once per test session (it takes a minute or two)."""
    return run_demo(REPO, tmp_path_factory.mktemp("demo") / "demo-class", say=lambda _: None)
