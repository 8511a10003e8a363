"""Grading beyond one machine: a local Dask cluster and a real PostgreSQL gradebook.

``.ci/run`` installs and starts PostgreSQL and sets COURSE_TEST_POSTGRES_URL; elsewhere the
test is skipped with the reason.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from helpers import ROOT

from course import notebooks, submission
from course.authoring import convert_draft
from course.autograde import Options, Status, autograde
from course.grading import grades, release
from course.modules import Course

POSTGRES = os.environ.get("COURSE_TEST_POSTGRES_URL")
pytestmark = [
    pytest.mark.xdist_group("distributed"),
    pytest.mark.skipif(not POSTGRES, reason="COURSE_TEST_POSTGRES_URL is not set (.ci/run starts PostgreSQL)"),
]


@pytest.fixture
def postgres_db() -> Iterator[str]:
    """A fresh database on the test server, dropped afterwards."""
    import psycopg

    assert POSTGRES
    name = f"course_test_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        yield POSTGRES.rsplit("/", 1)[0] + "/" + name
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_dask_workers_grade_into_postgresql(tmp_path: object, postgres_db: str) -> None:
    from distributed import LocalCluster

    root = tmp_path / "course"  # type: ignore[operator]
    (root / "source").mkdir(parents=True)
    (root / "nbgrader_config.py").write_text((ROOT / "nbgrader_config.py").read_text())
    convert_draft(ROOT / "tests" / "fixtures" / "hostile_module.py", root / "source" / "01_tensor" / "01_tensor.ipynb")
    course = Course(root, db_url=postgres_db)
    release(course)
    assert not (root / "gradebook.db").exists(), "the gradebook must be the PostgreSQL one"
    release_nb = notebooks.read(course.release_notebook("01_tensor"))
    source_nb = notebooks.read(course.source_notebook("01_tensor"))
    for student, nb in (("solved", notebooks.filled_in(release_nb, source_nb)), ("stub", release_nb)):
        submission.write(course, student, "01_tensor", nb)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        results = autograde(course, "01_tensor", options=Options(scheduler=cluster.scheduler_address))
    assert [(r.student, r.status, r.score) for r in results] == [
        ("solved", Status.GRADED, 10.0),
        ("stub", Status.GRADED, 0.0),
    ]
    assert {(g.student, g.score) for g in grades(course)} == {("solved", 10.0), ("stub", 0.0)}
