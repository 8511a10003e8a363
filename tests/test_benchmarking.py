"""Module 19: the benchmark harness warms up, repeats, pins and restores threads, records the environment, and
measures accuracy from the model's predictions on held-out data (never from a random draw)."""

from __future__ import annotations

import importlib.util
import os
import platform
import struct
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, run_course
from threadpoolctl import threadpool_info

from tinytorch.bench import (
    Comparison,
    Environment,
    InferenceResult,
    Suite,
    accuracy,
    as_numpy,
    compare,
    environment,
    format_seconds,
    holdout_split,
    measure_inference,
    pinned_threads,
    plot_comparison,
    run_suite,
    train_to_target,
)
from tinytorch.core.dataloader import DataLoader, TensorDataset
from tinytorch.core.layers import Linear, Module, ReLU, Sequential
from tinytorch.core.tensor import Tensor
from tinytorch.perf.profiling import LatencyStats

HAS_TORCH = importlib.util.find_spec("torch") is not None


def pool_threads() -> dict[str, int]:
    return {str(pool["filepath"]): int(pool["num_threads"]) for pool in threadpool_info()}


class Oracle(Module):
    """Logits with the highest score on ``answers[i]`` for the input holding the index ``i``."""

    def __init__(self, answers: np.ndarray, classes: int = 10) -> None:
        super().__init__()
        self.answers, self.classes, self.calls = answers, classes, 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        rows = np.asarray(x.data, dtype=np.int64).reshape(-1)
        logits = np.zeros((len(rows), self.classes), dtype=np.float32)
        logits[np.arange(len(rows)), self.answers[rows]] = 1.0
        return Tensor(logits)


def held_out(labels: np.ndarray, batch_size: int = 64) -> DataLoader:
    return DataLoader(TensorDataset(Tensor(np.arange(len(labels))), Tensor(labels)), batch_size=batch_size)


# --- the harness -------------------------------------------------------------------------------------------


def test_compare_warms_up_then_repeats_and_reports_statistics_of_its_own_samples() -> None:
    calls = {"a": 0, "b": 0}

    def make(name: str) -> object:
        def fn() -> float:
            calls[name] += 1
            return 1.0

        return fn

    run = compare({"a": make("a"), "b": make("b")}, warmup=4, repeats=9, inner=2)  # type: ignore[dict-item]
    assert calls == {"a": 1 + 4 + 9 * 2, "b": 1 + 4 + 9 * 2}  # one check call, the warm-up, repeats x inner
    for stats in run.results.values():
        samples = np.array(stats.samples)
        assert len(samples) == 9
        q1, med, q3 = np.percentile(samples, [25, 50, 75])
        assert stats.median == pytest.approx(med) and stats.iqr == pytest.approx(q3 - q1)
        assert stats.minimum == pytest.approx(samples.min()) and stats.maximum == pytest.approx(samples.max())
    assert run.ratio("b") == pytest.approx(run.results["b"].median / run.results["a"].median)


def test_compare_refuses_implementations_that_compute_something_else() -> None:
    with pytest.raises(ValueError, match="slow"):
        compare({"fast": lambda: np.arange(3.0), "slow": lambda: np.arange(3.0) + 1e-2}, repeats=1)
    ok = compare({"tt": lambda: Tensor([1.0, 2.0]), "np": lambda: np.array([1.0, 2.0])}, repeats=1, warmup=0)
    assert list(ok.results) == ["tt", "np"] and ok.baseline == "tt"
    with pytest.raises(ValueError):
        compare({}, repeats=1)
    with pytest.raises(ValueError, match="nope"):
        compare({"x": lambda: 1.0}, baseline="nope", repeats=1)


def test_the_table_contains_each_implementation_with_its_median_iqr_and_ratio() -> None:
    run = compare({"NumPy": lambda: np.ones(10).sum(), "Python": lambda: sum([1.0] * 10)}, repeats=5, warmup=1)
    table = run.table()
    lines = table.splitlines()
    assert len(lines) == 3
    for line, (name, stats) in zip(lines[1:], run.results.items(), strict=True):
        assert line.startswith(name)
        assert format_seconds(stats.median) in line and format_seconds(stats.iqr) in line
        assert f"{run.ratio(name):.2f}x" in line
    report = run.report()
    assert run.environment.describe() in report and table in report


def test_format_seconds_picks_a_unit() -> None:
    assert format_seconds(2.5) == "2.5 s"
    assert format_seconds(0.0032) == "3.2 ms"
    assert format_seconds(0.000512) == "512.0 us"
    assert format_seconds(8.12e-7) == "812.0 ns"


def test_as_numpy_reads_tensors_tuples_and_torch() -> None:
    assert np.array_equal(as_numpy(Tensor([1.0, 2.0])), [1.0, 2.0])
    assert as_numpy((Tensor([1.0]), np.array([2.0]))).shape == (2, 1)
    if HAS_TORCH:
        import torch

        assert np.array_equal(as_numpy(torch.ones(2, requires_grad=True) * 2), [2.0, 2.0])


def test_plot_has_a_bar_per_implementation_and_quartile_error_bars() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def stats(*samples: float) -> LatencyStats:
        q1, med, q3 = np.percentile(samples, [25, 50, 75])
        return LatencyStats(tuple(samples), float(med), float(q1), float(q3), min(samples), max(samples))

    run = Comparison("t", environment(), {"a": stats(1e-3, 2e-3, 5e-3), "b": stats(1e-4, 2e-4, 3e-4)}, "a")
    ax = plot_comparison(run)
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == pytest.approx([run.results["a"].median * 1e3, run.results["b"].median * 1e3])
    segments = ax.collections[0].get_segments()  # the error bars: from q1 to q3
    assert [tuple(seg[:, 1]) for seg in segments] == [
        pytest.approx((s.q1 * 1e3, s.q3 * 1e3)) for s in run.results.values()
    ]
    plt.close(ax.figure)


# --- threads and the environment ---------------------------------------------------------------------------


def test_pinned_threads_pins_inside_and_restores_after_also_on_errors() -> None:
    with pinned_threads(1):
        pass  # PyTorch's OpenMP pool (when installed) is loaded by the first use: compare from here on
    before = pool_threads()
    with pinned_threads(1) as note:
        assert set(pool_threads().values()) == {1}
        assert "NumPy BLAS 1 thread(s) (threadpoolctl)" in note
    assert pool_threads() == before
    with pytest.raises(KeyError), pinned_threads(1):
        raise KeyError("boom")
    assert pool_threads() == before
    with pytest.raises(ValueError, match="threads"), pinned_threads(0):
        pass


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_pinned_threads_pins_and_restores_pytorch() -> None:
    import torch

    torch.set_num_threads(2)
    with pinned_threads(1) as note:
        assert torch.get_num_threads() == 1 and "PyTorch 1 thread(s) (torch.set_num_threads)" in note
    assert torch.get_num_threads() == 2


def test_environment_records_the_machine_and_the_libraries() -> None:
    env = environment()
    assert isinstance(env, Environment) and env.threads is None
    assert env.numpy == np.__version__ and env.python == platform.python_version()
    assert env.cores == (os.cpu_count() or 1) and env.cpu
    pools = threadpool_info()
    assert len(env.blas) == len(pools)
    assert all(str(p["internal_api"]) in text for p, text in zip(pools, env.blas, strict=True))
    if HAS_TORCH:
        import torch

        assert env.torch == str(torch.__version__)
    else:
        assert env.torch is None
    with pinned_threads(1):
        pinned = environment(1)
    assert pinned.threads == 1 and all("(1 threads)" in text for text in pinned.blas)
    text = pinned.describe()
    assert env.cpu in text and np.__version__ in text and "1 (pinned)" in text


# --- accuracy on held-out data -----------------------------------------------------------------------------


def test_accuracy_comes_from_the_models_predictions() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=1000)
    loader = held_out(labels)
    assert accuracy(Oracle(labels), loader) == 1.0
    chance = accuracy(Oracle(rng.permutation(labels)), loader)
    assert 0.05 < chance < 0.15  # shuffled predictions: about 1 in 10
    for k in (1, 10, 250):
        changed = labels.copy()
        changed[:k] = (changed[:k] + 1) % 10
        assert accuracy(Oracle(changed), loader) == pytest.approx((1000 - k) / 1000)


def test_accuracy_never_comes_from_a_random_draw() -> None:
    labels = np.random.default_rng(1).integers(0, 10, size=300)
    model = Oracle(labels)
    np.random.seed(123)
    state = np.random.get_state()
    results = {accuracy(model, held_out(labels, batch_size=b)) for b in (1, 7, 300)}
    assert results == {1.0}  # the same predictions give the same number, however they are batched
    after = np.random.get_state()
    assert np.array_equal(state[1], after[1]) and state[2] == after[2]  # type: ignore[index]
    # a model whose predictions do not depend on the data scores what those predictions deserve
    constant = Oracle(np.zeros(300, dtype=np.int64))
    assert accuracy(constant, held_out(labels)) == pytest.approx(float(np.mean(labels == 0)))


def test_accuracy_uses_evaluation_mode_no_grad_and_restores_the_mode() -> None:
    modes: list[bool] = []

    class Spy(Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = Linear(2, 3)

        def forward(self, x: Tensor) -> Tensor:
            modes.append(self.training)
            out: Tensor = self.layer(x)
            assert not out.requires_grad
            return out

    spy = Spy()
    spy.train()
    loader = DataLoader(TensorDataset(Tensor(np.ones((5, 2), dtype=np.float32)), Tensor(np.zeros(5, dtype=np.int64))))
    value = accuracy(spy, loader)
    assert isinstance(value, float) and 0.0 <= value <= 1.0
    assert modes and not any(modes) and spy.training
    with pytest.raises(ValueError):
        accuracy(spy, [])


def test_holdout_split_is_disjoint_and_seeded() -> None:
    train, test = holdout_split(100, 0.2, seed=3)
    assert len(test) == 20 and len(train) == 80 and not set(train) & set(test)
    assert set(train) | set(test) == set(range(100))
    again = holdout_split(100, 0.2, seed=3)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])
    with pytest.raises(ValueError):
        holdout_split(1)


# --- inference and time to target --------------------------------------------------------------------------


def test_measure_inference_times_each_batch_size_in_eval_mode() -> None:
    model = Sequential(Linear(8, 4, generator=np.random.default_rng(0)), ReLU())
    model.train()
    results = measure_inference(model, Tensor(np.ones((32, 8), dtype=np.float32)), (1, 32), warmup=1, repeats=3)
    assert [r.batch_size for r in results] == [1, 32] and model.training
    assert all(isinstance(r, InferenceResult) and len(r.latency.samples) == 3 for r in results)
    assert results[1].throughput == pytest.approx(32 / results[1].latency.median)
    with pytest.raises(ValueError, match="33"):
        measure_inference(model, Tensor(np.ones((32, 8), dtype=np.float32)), (33,))


def test_train_to_target_stops_at_the_target_and_counts_the_evaluations() -> None:
    values = iter([0.2, 0.5, 0.91, 0.99])
    result = train_to_target(lambda: None, lambda: next(values), 0.9)
    assert result.reached and result.rounds == 3 and result.history == (0.2, 0.5, 0.91)
    missed = train_to_target(lambda: None, lambda: 5.0, 2.0, higher_is_better=False, max_rounds=4)
    assert not missed.reached and missed.rounds == 4
    with pytest.raises(ValueError):
        train_to_target(lambda: None, lambda: 1.0, 0.5, max_rounds=0)


# --- the suite ---------------------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    code = {np.dtype(np.uint8): 0x08}[array.dtype]
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def test_the_suite_on_the_digits_reaches_its_target_and_skips_missing_data(tmp_path: Path) -> None:
    suite = run_suite(["digits", "fashion"], quick=True, repeats=3, root=tmp_path / "missing")
    assert isinstance(suite, Suite) and [row.name for row in suite.rows] == ["digits MLP"]
    row = suite.rows[0]
    assert row.training.reached and row.training.value >= 0.97 and row.metric == "accuracy"
    assert row.single.batch_size == 1 and row.batch.batch_size == 64
    assert "fashion" in suite.skipped and "missing" in suite.skipped["fashion"]
    table = suite.table()
    assert "digits MLP" in table and "skipped" in table and suite.environment.describe() in table


def test_the_suite_accuracy_is_measured_on_the_held_out_split() -> None:
    from tinytorch.bench import digits_task

    task = digits_task(quick=True)
    before = task.evaluate()
    for parameter in task.model.parameters():  # a model that cannot tell the digits apart: all outputs equal
        parameter.data[...] = 0.0
    after = task.evaluate()
    assert before != after and after < 0.2  # the metric follows the model's predictions
    assert len(task.inputs) == len(holdout_split(1797, 0.2, 0)[1]) == 359  # 20% of the 1,797 digits, held out


def test_the_suite_runs_the_fashion_cnn_and_the_gpt_with_tiny_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 2000), ("t10k", 1000)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = (rng.random((n, 28, 28)) * 40).astype(np.uint8)
        images[np.arange(n), labels * 2, :] = 255  # a bright row whose position is the class: learnable
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", labels)
    text = "to be or not to be, that is the question. " * 200
    suite = run_suite(["fashion", "gpt"], quick=True, repeats=2, root=tmp_path, text=text)
    assert [row.name for row in suite.rows] == ["Fashion-MNIST CNN", "char GPT"] and not suite.skipped
    fashion, gpt = suite.rows
    assert fashion.training.reached and fashion.training.value >= 0.7
    assert gpt.metric == "val loss" and gpt.training.reached and gpt.training.value <= gpt.target
    assert gpt.batch.batch_size == 32


def test_course_bench_suite_prints_the_environment_and_a_row_per_model() -> None:
    result = run_course(REPO, "bench", "suite", "--models", "digits", "--quick", "--threads", "1")
    assert result.returncode == 0, result.stderr
    assert "threads: 1 (pinned)" in result.stdout and "digits MLP" in result.stdout
    assert "accuracy" in result.stdout and "BLAS:" in result.stdout
