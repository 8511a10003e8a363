"""Module 20: the capstone's file format as hostile data, its schemas, int8 layers, and ``course capstone``.

The grader's tests build a tiny class in tmp_path (ada honest, cy with inflated claims, bob malformed, ...) and
measure it in the bubblewrap sandbox when this machine can make one, else unsandboxed (``sandbox_problem()``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import REPO, copy_course, graded_class, run_course
from hypothesis import given, settings
from hypothesis import strategies as st

import tinytorch.capstone as capstone_module
from course import capstone
from course.modules import Course, CourseError
from course.report import report
from course.sandbox import sandbox_problem
from tinytorch.capstone import (
    FORMAT,
    HELD_OUT,
    LIMITS,
    MODEL_JSON,
    MODEL_NPZ,
    TASK,
    TOLERANCES,
    Limits,
    Unflatten,
    build_model,
    capstone_split,
    check_budgets,
    check_claims,
    describe_model,
    load_metrics,
    load_submission,
    measure,
    pareto_front,
    rank_variants,
    read_arrays,
    save_submission,
    train_classifier,
    validate_architecture,
    validate_metrics,
)
from tinytorch.core.autograd import no_grad
from tinytorch.core.convolutions import Conv2d, Flatten, MaxPool2d
from tinytorch.core.layers import Linear, ReLU, Sequential
from tinytorch.core.tensor import Tensor
from tinytorch.perf.quantization import QuantizedConv2d, QuantizedLinear, model_size_bytes, quantize_model

SANDBOX = sandbox_problem() is None
X = Tensor(np.random.default_rng(0).random((7, 64), dtype=np.float32))


def mlp(width: int = 12, seed: int = 0) -> Sequential:
    gen = np.random.default_rng(seed)
    return Sequential(Linear(64, width, generator=gen), ReLU(), Linear(width, 10, generator=gen))


def cnn(seed: int = 0) -> Sequential:
    gen = np.random.default_rng(seed)
    return Sequential(Unflatten(1, (1, 8, 8)), Conv2d(1, 3, 3, padding=1, generator=gen), ReLU(), MaxPool2d(2),
                      Flatten(), Linear(48, 10, generator=gen))  # fmt: skip


def metrics(**changes: Any) -> dict[str, Any]:
    return {"format": FORMAT, "task": TASK, "accuracy": 0.97, "latency_ms": 0.5, "size_bytes": 1000, **changes}


# --------------------------------------------------------------------------- module 15's layers in the format


def test_the_capstone_calls_modules_14_15_and_19() -> None:
    import tinytorch.bench as bench

    assert capstone_module.accuracy is bench.accuracy and capstone_module.pinned_threads is bench.pinned_threads
    assert capstone_module.measure_inference is bench.measure_inference
    assert capstone_module.model_size_bytes is model_size_bytes
    for gone in ("Int8Linear", "Int8Conv2d", "quantize_per_channel", "quantize_int8", "from_quantized",
                 "median_latency_ms", "one_blas_thread"):  # fmt: skip
        assert not hasattr(capstone_module, gone), gone


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("make", [mlp, cnn])
def test_module_15_layers_round_trip_as_they_are(tmp_path: Path, make: Any, per_channel: bool) -> None:
    model = quantized(make(), per_channel)
    layers, arrays = describe_model(model)
    kinds = [layer for layer in model if isinstance(layer, QuantizedLinear | QuantizedConv2d)]
    assert kinds and all(layer["per_channel"] is per_channel for layer in layers if "per_channel" in layer)
    assert all(a.dtype == np.int8 for name, a in arrays.items() if name.endswith(".qweight"))
    assert sum(a.nbytes for a in arrays.values()) == model_size_bytes(model)  # the file holds what is measured
    back = load_submission(save_submission(model, tmp_path / "q", metrics()))
    assert [type(layer) for layer in back] == [type(layer) for layer in model]
    assert model_size_bytes(back) == model_size_bytes(model)
    for ours, theirs in zip(back, model, strict=True):
        if isinstance(ours, QuantizedLinear | QuantizedConv2d):
            assert isinstance(theirs, QuantizedLinear | QuantizedConv2d)
            assert ours.qweight.dtype == np.int8 and np.array_equal(ours.qweight, theirs.qweight)
            assert ours.scale.shape == theirs.scale.shape and ours.zero_point is None
    with no_grad():
        assert np.array_equal(back(X).data, model(X).data)
        assert np.allclose(model(X).data, make()(X).data, atol=0.05)
    assert model_size_bytes(model) < model_size_bytes(make()) / 2.5


def test_only_8_bit_symmetric_layers_enter_the_format() -> None:
    affine = Sequential(QuantizedLinear.from_float(Linear(64, 10), symmetric=False))
    for model in (quantize_model(mlp(), bits=4), affine):
        with pytest.raises(ValueError, match="8-bit symmetric"):
            describe_model(model)


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
def test_stored_codes_match_pytorch() -> None:
    torch = pytest.importorskip("torch")
    layer = Linear(5, 6, generator=np.random.default_rng(2))
    _, arrays = describe_model(quantized(Sequential(layer)))
    q, scale = arrays["0.qweight"], arrays["0.scale"]
    theirs = torch.quantize_per_channel(
        torch.tensor(layer.weight.data), torch.tensor(scale.astype(np.float64)), torch.zeros(6, dtype=torch.long), 0,
        torch.qint8,
    )
    assert np.array_equal(theirs.int_repr().numpy(), q)


# --------------------------------------------------------------------------- the format


def quantized(model: Sequential, per_channel: bool = True) -> Sequential:
    result = quantize_model(model, per_channel=per_channel)
    assert isinstance(result, Sequential)
    return result


@pytest.mark.parametrize(
    "make",
    [mlp, cnn, lambda: quantized(mlp()), lambda: quantized(cnn()), lambda: quantized(cnn(), per_channel=False)],
)
def test_round_trip_gives_identical_scores(tmp_path: Path, make: Any) -> None:
    model = make()
    folder = save_submission(model, tmp_path / "s", metrics())
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.json", "model.json", "model.npz"]
    back = load_submission(folder)
    with no_grad():
        assert np.array_equal(back(X).data, model(X).data)
    assert describe_model(back)[0] == describe_model(model)[0]
    assert load_metrics(folder) == metrics()
    assert validate_architecture(json.loads((folder / MODEL_JSON).read_text())) == []


def test_metrics_schema() -> None:
    assert validate_metrics(metrics()) == [] and validate_metrics(metrics(description="x" * 500)) == []
    bad: Any
    for bad in (
        metrics(accuracy=1.2),
        metrics(accuracy="high"),
        metrics(latency_ms=0),
        metrics(size_bytes=1.5),
        metrics(task="mnist"),
        metrics(extra=1),
        {k: v for k, v in metrics().items() if k != "accuracy"},
        [],
        metrics(description="x" * 501),
        metrics(accuracy=float("nan")),
        metrics(latency_ms=float("nan")),
        metrics(latency_ms=float("inf")),
        json.loads('{"accuracy": NaN}'),
    ):
        assert validate_metrics(bad), bad
    with pytest.raises(ValueError, match="accuracy"):
        save_submission(mlp(), Path("/nonexistent/never-written"), metrics(accuracy=2))


def saved() -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    return describe_model(quantized(cnn()))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda layers, arrays: layers.append({"type": "Eval", "code": "print(1)"}), "model.json"),
        (lambda layers, arrays: layers[1].update(out_channels=4), "must be int8"),
        (lambda layers, arrays: layers[2].update(inplace=True), "model.json"),
        (lambda layers, arrays: layers[1].update(kernel_size=[3, 3, 3]), "model.json"),
        (lambda layers, arrays: layers[1].update(in_channels=10**6), "model.json"),
        (lambda layers, arrays: arrays.update({"9.weight": np.zeros(3, np.float32)}), "unexpected arrays"),
        (lambda layers, arrays: arrays.pop("5.bias"), "missing arrays"),
        (lambda layers, arrays: arrays.update({"1.qweight": arrays["1.qweight"].astype(np.float32)}), "int8"),
        (lambda layers, arrays: arrays.update({"5.bias": np.full(10, np.nan, np.float32)}), "NaN"),
        (lambda layers, arrays: arrays.update({"1.scale": -arrays["1.scale"]}), "positive"),
        (lambda layers, arrays: layers.__setitem__(5, {"type": "Linear", "in_features": 48, "out_features": 7,
                                                        "bias": True}), "arrays"),
        (lambda layers, arrays: layers[5].update(per_channel=False), "scale must be float32 \\(\\)"),
        (lambda layers, arrays: layers.__setitem__(0, {"type": "ReLU"}), "fit together"),
    ],
)
def test_build_model_refuses_what_does_not_match(change: Any, words: str) -> None:
    layers, arrays = saved()
    change(layers, arrays)
    with pytest.raises(ValueError, match=words):
        build_model(layers, arrays)


def test_layers_that_do_not_chain_are_refused() -> None:
    layers, arrays = describe_model(Sequential(Linear(64, 5), ReLU(), Linear(6, 10)))
    with pytest.raises(ValueError, match="fit together"):
        build_model(layers, arrays)
    with pytest.raises(ValueError, match=r"\(2, 10\)"):
        build_model(*describe_model(Sequential(Linear(64, 9))))


def test_hostile_files_are_refused(tmp_path: Path) -> None:
    folder = save_submission(mlp(), tmp_path / "s", metrics())
    np.savez(folder / MODEL_NPZ, np.array([{"a": 1}], dtype=object))  # a pickled object inside
    with pytest.raises(ValueError):
        load_submission(folder)
    with pytest.raises(ValueError, match="unpacks to"):
        read_arrays(save_submission(mlp(), tmp_path / "t", metrics()) / MODEL_NPZ, max_bytes=100)
    (folder / MODEL_NPZ).write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="readable"):
        load_submission(folder)
    (folder / MODEL_JSON).unlink()
    os.symlink("/etc/passwd", folder / MODEL_JSON)
    with pytest.raises(ValueError, match="regular file"):
        load_submission(folder)


def test_describe_refuses_unknown_layers() -> None:
    class Sneaky(Linear):
        pass

    with pytest.raises(TypeError, match=r"1 .*Sneaky"):
        describe_model(Sequential(ReLU(), Sneaky(64, 10)))


# --------------------------------------------------------------------------- measuring, budgets, Pareto


def test_measure_and_budgets() -> None:
    x_train, y_train, x_test, _ = capstone_split()
    assert x_train.shape == (1797 - HELD_OUT, 64) and x_test.shape == (HELD_OUT, 64) and float(x_test.data.max()) <= 1
    model = mlp(16)
    train_classifier(model, x_train, y_train, epochs=15)
    found = measure(quantized(model), repeats=3)
    assert validate_metrics(found) == []
    assert found["size_bytes"] == 64 * 16 + 16 * 10 + 2 * 4 * (16 + 10)
    assert found["accuracy"] >= LIMITS.min_accuracy and check_budgets(found) == []
    assert check_budgets(measure(model, repeats=3))[0].startswith("size")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)), max_size=12))
def test_pareto_front_is_the_undominated_set(points: list[tuple[int, int, int]]) -> None:
    front = pareto_front([(float(a), float(b), float(c)) for a, b, c in points])
    assert front == sorted(front)
    for i, p in enumerate(points):
        dominated = any(q[0] >= p[0] and q[1] <= p[1] and q[2] <= p[2] and q != p for q in points)
        assert (i in front) == (not dominated)


finite = st.floats(0, 1, allow_nan=False)
metric_values = st.fixed_dictionaries(
    {"accuracy": finite, "latency_ms": st.floats(0.01, 10), "size_bytes": st.integers(1, 10_000)}
)


@settings(max_examples=60, deadline=None)
@given(measured=metric_values, worse=metric_values)
def test_claims_better_than_the_measurement_are_flagged(measured: dict[str, Any], worse: dict[str, Any]) -> None:
    assert check_claims(measured, measured) == []
    humble = {"accuracy": min(measured["accuracy"], worse["accuracy"]),
              "latency_ms": max(measured["latency_ms"], worse["latency_ms"]),
              "size_bytes": max(measured["size_bytes"], worse["size_bytes"])}  # fmt: skip
    assert check_claims(humble, measured) == []
    boast = {"accuracy": measured["accuracy"] + (TOLERANCES.accuracy_images + 1) / HELD_OUT,
             "latency_ms": (measured["latency_ms"] - TOLERANCES.latency_slack_ms) / TOLERANCES.latency_factor - 1,
             "size_bytes": measured["size_bytes"] - 1}  # fmt: skip
    assert [flag.split()[1] for flag in check_claims(boast, measured)] == ["accuracy", f"{boast['size_bytes']:,}",
                                                                           f"{boast['latency_ms']:.3f}"]  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text("abc", min_size=1, max_size=3), metric_values, max_size=8))
def test_rank_variants_orders_those_within_the_limits(results: dict[str, dict[str, Any]]) -> None:
    limits = Limits(min_accuracy=0.3, max_latency_ms=5.0, max_size_bytes=5000)
    ranked = rank_variants(results, limits)
    assert sorted(ranked) == sorted(name for name, m in results.items() if not check_budgets(m, limits))
    keys = [(-results[n]["accuracy"], results[n]["size_bytes"], results[n]["latency_ms"]) for n in ranked]
    assert keys == sorted(keys)


# --------------------------------------------------------------------------- the grader


@pytest.fixture(scope="module")
def trained() -> Sequential:
    x_train, y_train, _, _ = capstone_split()
    model = mlp(16)
    train_classifier(model, x_train, y_train)
    return quantized(model)


def tiny_class(root: Path, model: Sequential) -> Course:
    course = Course(root)
    honest = measure(model, repeats=3)
    save_submission(model, course.submission_folder("ada", capstone.CAPSTONE), honest)
    save_submission(model, course.submission_folder("cy", capstone.CAPSTONE), {**honest, "accuracy": 1.0,
                                                                              "size_bytes": 10})  # fmt: skip
    bob = course.submission_folder("bob", capstone.CAPSTONE)
    bob.mkdir(parents=True)
    (bob / "metrics.json").write_text('{"accuracy": "high"}')
    big = mlp(64)  # over the size budget, honest
    save_submission(big, course.submission_folder("dee", capstone.CAPSTONE), measure(big, repeats=3))
    eve = course.submission_folder("eve", capstone.CAPSTONE)
    shutil.copytree(course.submission_folder("ada", capstone.CAPSTONE), eve)
    (eve / MODEL_NPZ).unlink()
    os.symlink(course.submission_folder("ada", capstone.CAPSTONE) / MODEL_NPZ, eve / MODEL_NPZ)
    fay = course.submission_folder("fay", capstone.CAPSTONE)
    shutil.copytree(course.submission_folder("ada", capstone.CAPSTONE), fay)
    document = json.loads((fay / MODEL_JSON).read_text())
    document["layers"][0]["out_features"] = 17  # arrays no longer match: found only when the model is read
    (fay / MODEL_JSON).write_text(json.dumps(document))
    (course.submitted / "gus").mkdir(parents=True)
    os.symlink("/etc", course.submission_folder("gus", capstone.CAPSTONE))
    return course


def test_grader_measures_flags_and_keeps(tmp_path: Path, trained: Sequential) -> None:
    course = tiny_class(tmp_path / "class", trained)
    results = {r.student: (r, kept) for r, kept in capstone.grade(course, sandbox=SANDBOX)}
    assert sorted(results) == ["ada", "bob", "cy", "dee", "eve", "fay", "gus"]
    assert not any(kept for _, kept in results.values())
    ada, cy, dee = results["ada"][0], results["cy"][0], results["dee"][0]
    assert ada.status == capstone.MEASURED and ada.within_limits and not ada.flags, ada
    assert ada.measured is not None and ada.claimed is not None
    assert ada.measured["accuracy"] == ada.claimed["accuracy"] and ada.measured["size_bytes"] == 1392
    assert cy.status == capstone.ATTENTION and len(cy.flags) == 2, cy.flags
    assert "claims accuracy 1.0000" in cy.reason and "claims 10 bytes, measured 1,392" in cy.reason
    assert cy.measured is not None and cy.measured["accuracy"] == ada.measured["accuracy"]  # what the board shows
    assert dee.status == capstone.MEASURED and not dee.within_limits and dee.over_limits[-1].startswith("size")
    for name, words in (("bob", "no model.json"), ("eve", "symbolic link"), ("fay", "could not be measured"),
                        ("gus", "not a real folder")):  # fmt: skip
        result = results[name][0]
        assert result.status == capstone.ATTENTION and result.measured is None and words in result.reason, result
    assert "missing arrays" in results["fay"][0].reason or "must be" in results["fay"][0].reason

    on_disk = json.loads(capstone.result_path(course, "ada").read_text())
    assert on_disk["measured"] == ada.measured
    (course.submission_folder("ada", capstone.CAPSTONE) / "metrics.json").write_text("{}")
    again = dict((r.student, (r, kept)) for r, kept in capstone.grade(course, "ada", sandbox=SANDBOX))
    assert again["ada"][1] and again["ada"][0].measured == ada.measured  # kept, not measured again
    forced = capstone.grade(course, "ada", force=True, sandbox=SANDBOX)
    assert forced[0][0].status == capstone.ATTENTION and not forced[0][1]  # {} is not valid metrics
    with pytest.raises(CourseError, match="zed"):
        capstone.grade(course, "zed", sandbox=SANDBOX)

    board = capstone.leaderboard(capstone.read_results(course))
    assert [(rank, r.student) for rank, r, _ in board] == [(None, "cy"), (None, "dee")]  # flagged, over a limit
    png = capstone.plot_pareto(capstone.read_results(course), tmp_path / "pareto.png")
    assert png is not None and png.stat().st_size > 10_000


def test_measurement_time_limit(tmp_path: Path, trained: Sequential) -> None:
    folder = save_submission(trained, tmp_path / "s", metrics())
    measured, problem = capstone.measure_folder(folder, sandbox=SANDBOX, seconds=0)
    assert measured is None and "time limit" in problem


@pytest.mark.skipif(not SANDBOX, reason="bubblewrap cannot make a sandbox here")
def test_the_sandbox_shows_nothing_of_the_course(tmp_path: Path) -> None:
    from course.sandbox import bwrap_command, plan_for

    work, run = tmp_path / "work" / "capstone", tmp_path / "run"
    work.mkdir(parents=True)
    run.mkdir()
    secret = tmp_path / "submitted" / "other" / "metrics.json"
    secret.parent.mkdir(parents=True)
    secret.write_text("{}")
    plan = plan_for(work, run)
    import subprocess

    done = subprocess.run(
        bwrap_command(plan, ["/bin/sh", "-c", f"cat {secret} || echo hidden"]), capture_output=True, text=True
    )
    assert "hidden" in done.stdout


def test_report_shows_leaderboard_and_pareto_plot(tmp_path: Path, trained: Sequential) -> None:
    course = copy_course(tmp_path / "course")
    graded_class(course, "01_tensor", {"ada": [1.0] * 20, "cy": [1.0]})
    honest = measure(trained, repeats=3)
    save_submission(trained, course.submission_folder("ada", capstone.CAPSTONE), honest)
    save_submission(trained, course.submission_folder("cy", capstone.CAPSTONE), {**honest, "accuracy": 1.0})
    capstone.grade(course, sandbox=SANDBOX)
    result = report(course)
    page = result.page.read_text()
    board = page.split("<table class='sortable' id='leaderboard'>")[1].split("</table>")[0]
    assert "<td class='num' data-value='1'>1</td><td>ada</td>" in board  # cy's flagged claims: no rank
    assert "<td class='num' data-value='9999'>-</td><td>cy</td>" in board
    assert "flagged: claims accuracy 1.0000" in board and "<td>match</td>" in board
    assert "20_capstone: capstone files: claims accuracy" in page  # cy needs attention in the students table
    assert (course.reports / "capstone_pareto.png").is_file() and "capstone_pareto.png" in page


def test_course_capstone_command(tmp_path: Path, trained: Sequential) -> None:
    course = Course(tmp_path / "class")
    (course.root / "source").mkdir(parents=True)
    shutil.copy2(REPO.root / "nbgrader_config.py", course.root / "nbgrader_config.py")
    save_submission(trained, course.submission_folder("ada", capstone.CAPSTONE), measure(trained, repeats=3))
    flags = [] if SANDBOX else ["--no-sandbox"]
    first = run_course(course, "capstone", *flags)
    assert first.returncode == 0 and "ada" in first.stdout and "within limits" in first.stdout, first.stderr
    again = run_course(course, "capstone", *flags)
    assert again.returncode == 0 and "kept; --force" in again.stdout
    (course.submission_folder("ada", capstone.CAPSTONE) / "metrics.json").unlink()
    forced = run_course(course, "capstone", "--force", *flags)
    assert forced.returncode == 1 and "no metrics.json handed in" in forced.stdout
