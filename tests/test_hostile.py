"""Hostile submissions through the real auto-grader: no unearned point, the batch finishes, nothing leaks.

A tiny module named 01_tensor (tests/fixtures/hostile_module.py) is released in a scratch
course; an honest student submits the solution, and each hostile student answers its first
cell with an attack and leaves the second cell untouched, so every hostile score must be 0.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import nbformat
import psutil
import pytest
from helpers import ROOT

from course import notebooks
from course.authoring import convert_draft
from course.autograde import ATTENTION, GRADED, Options, Submission, autograde
from course.grading import release
from course.modules import Course
from course.sandbox import sandbox_problem

pytestmark = [
    pytest.mark.xdist_group("hostile"),
    pytest.mark.skipif(sandbox_problem() is not None, reason=f"no sandbox here: {sandbox_problem()}"),
]
SLEEP_MARK = "4242.5"
HOME_SECRET = Path.home() / ".tinytorch-hostile-test-secret"
Graded = tuple[Course, dict[str, Submission], "Listener"]


def attacks(root: Path, port: int) -> dict[str, str]:
    """Student name -> the source of their first answer cell."""
    source_nb = root / "source" / "01_tensor" / "01_tensor.ipynb"
    return {
        "infinite-loop": "while True:\n    pass",
        "memory-bomb": "blocks = []\nwhile True:\n    blocks.append(bytearray(256 * 1024 * 1024))",
        "fork-bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "setsid-child": f"import subprocess\nsubprocess.Popen(['setsid', 'sleep', '{SLEEP_MARK}'])",
        "os-exit": "import os\nos._exit(0)",
        "sys-exit": "import sys\nsys.exit(0)",
        "network": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3).sendall(b'stolen')",
        "read-source": (
            f"import json\nnb = json.load(open({str(source_nb)!r}))\n"
            "exec('\\n'.join(''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code'))"
        ),
        "gradebook": (
            f"import sqlite3\ndb = sqlite3.connect({str(root / 'gradebook.db')!r})\n"
            "db.execute('update grade set auto_score = 5')\ndb.commit()"
        ),
        "replace-numpy-testing": (
            "import numpy as np\nnp.testing.assert_allclose = lambda *a, **k: None\n"
            "def double(x):\n    return np.zeros(1)"
        ),
        "replace-builtins": (
            "import builtins\nbuiltins.isinstance = lambda *a: True\nimport numpy as np\n"
            "np.testing.assert_allclose = lambda *a, **k: None\ndef double(x):\n    return 0"
        ),
        "swallow-errors": "get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)\ndouble = None",
        "fake-output": "print('double-tests: PASSED 5/5')\nprint('All tests passed!')",
        "import-reference": (
            "from tinytorch.core.tensor import Tensor\ndef double(x):\n    return (Tensor(x) * 2).numpy()"
        ),
        "read-home": (
            f"secret = open({str(HOME_SECRET)!r}).read()\nimport numpy as np\n"
            "def double(x):\n    return np.asarray(x, dtype=np.float64) * 2"
        ),
        "write-outside": f"open({str(root / 'pwned.txt')!r}, 'w').write('x')\nopen('/tmp/../pwned', 'w')",
        "flood-output": "for _ in range(20000):\n    print('x' * 1000)",
        "fill-disk": (
            "with open('big.bin', 'wb') as f:\n    while True:\n        f.write(b'0' * 2**20)"
        ),
    }


def edited_locked(nb: object) -> None:
    for cell in nb.cells:  # type: ignore[attr-defined]
        if notebooks.grade_id(cell) == "double-tests":
            cell.source = "pass"


def deleted_tests(nb: object) -> None:
    nb.cells = [c for c in nb.cells if not notebooks.is_test(c)]  # type: ignore[attr-defined]


class Listener:
    """A loopback server that records whether anything connected to it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.5)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.server.close()


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Graded]:
    root = tmp_path_factory.mktemp("hostile") / "course"
    (root / "source").mkdir(parents=True)
    config = (ROOT / "nbgrader_config.py").read_text() + "\nc.Execute.timeout = 8\n"
    (root / "nbgrader_config.py").write_text(config)
    convert_draft(ROOT / "tests" / "fixtures" / "hostile_module.py", root / "source" / "01_tensor" / "01_tensor.ipynb")
    course = Course(root)
    release(course)
    release_nb = notebooks.read(course.release / "01_tensor" / "01_tensor.ipynb")
    source_nb = notebooks.read(course.source / "01_tensor" / "01_tensor.ipynb")
    HOME_SECRET.write_text("the instructor's private file")
    listener = Listener()
    submissions = {"honest": notebooks.filled_in(release_nb, source_nb)}
    for student, code in attacks(root, listener.port).items():
        submissions[student] = notebooks.filled_in(release_nb, source_nb, {"double": code, "halve": "pass"})
    for student, change in (("edit-locked-test", edited_locked), ("delete-test-cells", deleted_tests)):
        nb = notebooks.filled_in(release_nb, source_nb, {"double": "pass", "halve": "pass"})
        change(nb)
        submissions[student] = nb
    for student, nb in submissions.items():
        folder = course.submitted / student / "01_tensor"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "01_tensor.ipynb")
    results = {s.student: s for s in autograde(course, "01_tensor", options=Options(workers=2))}
    yield course, results, listener
    listener.close()
    HOME_SECRET.unlink(missing_ok=True)


def test_the_batch_finishes_and_the_honest_student_gets_full_marks(graded: Graded) -> None:
    course, results, _ = graded
    assert len(results) == len(list(course.submitted.iterdir()))
    honest = results["honest"]
    assert (honest.status, honest.score, honest.max_score) == (GRADED, 10.0, 10.0), honest


def test_no_hostile_submission_gains_a_point(graded: Graded) -> None:
    _, results, _ = graded
    for student, result in results.items():
        if student == "honest":
            continue
        if result.score is None:
            assert result.status == ATTENTION and result.reason, f"{student}: a missing grade must say why"
        else:
            assert result.score == 0, f"{student} gained {result.score} points: {result}"


@pytest.mark.parametrize(
    ("student", "reason"),
    [
        ("infinite-loop", "time limit"),
        ("os-exit", "kernel died"),
        ("delete-test-cells", "deleted"),
        ("replace-numpy-testing", "tampering"),
        ("replace-builtins", "tampering"),
        ("swallow-errors", "tampering"),
    ],
)
def test_suspicious_submissions_need_attention(
    graded: Graded, student: str, reason: str
) -> None:
    result = graded[1][student]
    assert result.status == ATTENTION and reason in result.reason, result


def test_nothing_escapes_the_sandbox(graded: Graded) -> None:
    course, _, listener = graded
    assert listener.connections == 0, "a grading kernel reached the network"
    assert not (course.root / "pwned.txt").exists() and not Path("/pwned").exists()
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if SLEEP_MARK in " ".join(p.info["cmdline"] or [])]
    assert not leftovers, "a process started by a submission outlived its kernel"
    assert not list(course.autograded.rglob("big.bin")), "the disk filler's file reached the real disk"


def test_flooded_output_is_truncated(graded: Graded) -> None:
    course, _, _ = graded
    notebook = course.autograded / "flood-output" / "01_tensor" / "01_tensor.ipynb"
    assert notebook.stat().st_size < 2_000_000


def test_grades_are_exactly_what_the_graders_wrote(graded: Graded) -> None:
    from nbgrader.api import Gradebook

    course, results, _ = graded
    with Gradebook(course.gradebook_url) as gradebook:
        for student, result in results.items():
            if result.score is not None:
                assert gradebook.find_submission("01_tensor", student).score == result.score


def test_source_notebook_is_untouched(graded: Graded) -> None:
    course, _, _ = graded
    nb = json.loads((course.source / "01_tensor" / "01_tensor.ipynb").read_text())
    assert any("BEGIN SOLUTION" in "".join(c["source"]) for c in nb["cells"])
    assert shutil.which("bwrap")
