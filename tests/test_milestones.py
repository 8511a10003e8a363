"""`course milestone`: each historical result is reached, with the reference package or the learner's own."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, ROOT, fill_in, learner_course, run_course, skip_without_data

from course.milestones import Milestone, discover_milestones

MILESTONES = discover_milestones(REPO)
def test_every_milestone_is_listed() -> None:
    listed = run_course(REPO, "milestone")
    assert listed.returncode == 0, listed.stderr
    for milestone in MILESTONES:
        assert milestone.name in listed.stdout


@pytest.mark.parametrize("milestone", MILESTONES, ids=[m.name for m in MILESTONES])
def test_milestone_reaches_its_result_and_saves_a_plot(milestone: Milestone, tmp_path: Path) -> None:
    """Each milestone, its --quick run where it has one (the full runs take minutes: see milestones/README.md)."""
    name = milestone.name
    skip_without_data(name)
    quick = ["--quick"] if milestone.has_quick_run else []
    ran = run_course(REPO, "milestone", name[:4], "--out", str(tmp_path), *quick)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"with tinytorch from {ROOT / 'tinytorch'}" in ran.stdout
    assert re.search(rf"{name}: .+ -> REACHED \(\d+\.\d s\)", ran.stdout), ran.stdout
    plot = tmp_path / f"{name}.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_1986_milestone_reports_at_least_97_percent(tmp_path: Path) -> None:
    ran = run_course(REPO, "milestone", "mlp", "--out", str(tmp_path))
    accuracy = re.search(r"test accuracy (\d+\.\d+)%", ran.stdout)
    assert accuracy and float(accuracy[1]) >= 97.0, ran.stdout


def test_learner_milestone_needs_the_modules_it_uses(tmp_path: Path) -> None:
    course = learner_course(tmp_path / "course")
    refused = run_course(course, "milestone", "1957", "--learner")
    assert refused.returncode == 2
    assert "01_tensor" in refused.stderr and "05_dataloader" in refused.stderr
    assert "course export 01" in refused.stderr and "Traceback" not in refused.stderr


def test_learner_milestone_runs_the_learners_own_package(tmp_path: Path) -> None:
    course = learner_course(tmp_path / "course")
    for name in ("01_tensor", "02_activations", "03_layers", "05_dataloader"):
        assert run_course(course, "start", name).returncode == 0
        fill_in(course, name)
        assert run_course(course, "export", name).returncode == 0
    ran = run_course(course, "milestone", "perceptron", "--learner")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"with tinytorch from {course.learner_package}" in ran.stdout
    assert (course.reports / "milestones" / "1957_perceptron.png").is_file()


def test_quick_is_refused_where_a_milestone_has_no_quick_run(tmp_path: Path) -> None:
    refused = run_course(REPO, "milestone", "1957", "--quick", "--out", str(tmp_path))
    assert refused.returncode == 2 and "has no --quick run" in refused.stderr, refused.stdout + refused.stderr


def test_the_1998_quick_run_states_its_own_target(tmp_path: Path) -> None:
    skip_without_data("1998_cnn")
    ran = run_course(REPO, "milestone", "cnn", "--quick", "--out", str(tmp_path))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert re.search(r"quick run: 10,000 training images, 2 epochs .+ target 75%", ran.stdout), ran.stdout
    accuracy = re.search(r"test accuracy (\d+\.\d+)% on 2,000 Fashion-MNIST test images .+ \(target 75%, quick run\)",
                         ran.stdout)
    assert accuracy and float(accuracy[1]) >= 75.0, ran.stdout
    assert re.search(r"^epoch 2/2: train loss .+ test accuracy", ran.stdout, re.MULTILINE), ran.stdout
    assert (tmp_path / "1998_cnn.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_1998_milestone_says_what_to_install_without_the_data(tmp_path: Path) -> None:
    ran = subprocess.run(
        [sys.executable, str(ROOT / "milestones" / "1998_cnn.py"), "--quick", "--data", str(tmp_path / "none"),
         "--out", str(tmp_path)],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "sudo apt-get install dataset-fashion-mnist" in ran.stderr and "--data FOLDER" in ran.stderr
    assert str(tmp_path / "none") in ran.stderr and "Traceback" not in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    assert not (tmp_path / "1998_cnn.png").exists()


def test_learner_1998_needs_the_convolutions_and_what_they_build_on(tmp_path: Path) -> None:
    """The script imports PyTorch-shaped names (tinytorch.nn, tinytorch.optim ...): each counts as its module."""
    course = learner_course(tmp_path / "course")
    refused = run_course(course, "milestone", "1998", "--learner")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    for module in ("01_tensor", "03_layers", "04_losses", "05_dataloader", "06_autograd", "07_optimizers",
                   "08_training", "09_convolutions"):
        assert module in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr


def write_fashion_like(folder: Path, n_train: int = 640, n_test: int = 200, seed: int = 0) -> None:
    """Small IDX files shaped like Fashion-MNIST's: class k is a bright 6x6 square at its own place, on noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=count).astype(np.uint8)
        images = rng.integers(0, 60, size=(count, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            row, col = 2 + 12 * (label // 5), 1 + 5 * (label % 5)
            images[i, row : row + 6, col : col + 6] = 255
        for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
            (folder / name).write_bytes(header + array.tobytes())


def test_the_2018_quick_run_prints_one_table_of_measured_rows(tmp_path: Path) -> None:
    """On small IDX files (no Fashion-MNIST needed): every row is measured or says which module it waits for."""
    write_fashion_like(tmp_path / "fashion")
    ran = subprocess.run(
        [sys.executable, str(ROOT / "milestones" / "2018_optimization.py"), "--quick", "--data",
         str(tmp_path / "fashion"), "--out", str(tmp_path)],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )
    assert ran.returncode in (0, 1), ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr, ran.stderr
    assert "quick run: LeNet-5 on 640 Fashion-MNIST training images for 2 epochs, accuracy on 200 test images" \
        in ran.stdout
    table = (tmp_path / "2018_optimization.txt").read_text(encoding="utf-8")
    assert table in ran.stdout
    cnn_rows = ("LeNet-5 float32", "int8 per-channel", "pruned 80%", "pruned 80% + int8", "channels pruned 50%")
    measured = r" +[\d,]+ +\d+\.\d\dx +\S+ m?s \[.+\] +\S+ m?s \[.+\] +\d+\.\d\d% +[+-]\d+\.\d\dp"
    for row in cnn_rows:  # bytes, ratio, batch latency [IQR], one-image latency [IQR], accuracy, change
        assert re.search(rf"^{re.escape(row)}{measured}", table, re.MULTILINE), (row, table)
    assert re.search(r"^int8 per-channel .+ weights \d\.\d\dx smaller", table, re.MULTILINE), table
    assert re.search(r"^pruned 80% .+ sparsity 80\.0% after", table, re.MULTILINE), table
    assert re.search(r"^uncached +\S+ m?s \[.+\] +\d+\.\d\d +\d+\.\d$", table, re.MULTILINE), table
    assert re.search(r"^KV cache .+ \d+\.\dx faster, same tokens: yes, cache [\d,]+ bytes$", table, re.MULTILINE), table
    assert "waits for" not in ran.stdout, ran.stdout
    baseline = re.search(r"^LeNet-5 float32 +246,824 +1\.00x .+ ms \[.+\] +(\d+\.\d+)% +\+0\.00p", table, re.MULTILINE)
    assert baseline and float(baseline[1]) >= 90.0, table  # the squares are easy to tell apart
    assert re.search(r"validation loss \d\.\d{3} nats/char", table), table
    assert re.search(r"2018_optimization: .+ -> (NOT )?REACHED \(\d+\.\d s\)", ran.stdout), ran.stdout
    assert (tmp_path / "2018_optimization.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_learner_2018_needs_the_modules_it_optimizes_and_those_1998_and_2017_train_with(tmp_path: Path) -> None:
    """2018 reuses the 1998 and 2017 scripts through importlib; their modules (08's training loop) count too."""
    course = learner_course(tmp_path / "course")
    refused = run_course(course, "milestone", "2018", "--learner")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    for module in ("08_training", "09_convolutions", "13_transformers", "15_quantization", "16_compression",
                   "18_memoization"):
        assert module in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
