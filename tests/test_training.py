"""tinytorch.core.training: clipping, schedules, NaN checks, checkpoints and the loop, against float64 references
written here and against PyTorch when it is installed."""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinytorch.core.activations import ReLU
from tinytorch.core.dataloader import DataLoader, TensorDataset
from tinytorch.core.layers import Dropout, Linear, Module, Sequential
from tinytorch.core.losses import CrossEntropyLoss, MSELoss
from tinytorch.core.optimizers import SGD, Adam, AdamW, Optimizer
from tinytorch.core.tensor import Tensor, is_grad_enabled
from tinytorch.core.training import (
    History,
    NonFiniteError,
    WarmupCosineLR,
    check_finite,
    clip_grad_norm_,
    cosine_with_warmup,
    count_nonfinite,
    evaluate,
    fit,
    load_checkpoint,
    plot_history,
    save_checkpoint,
    train_step,
    train_step_accumulated,
)

GRADS = st.lists(
    hnp.arrays(np.float32, hnp.array_shapes(max_dims=3, max_side=5), elements=st.floats(-100, 100, width=32)),
    min_size=1,
    max_size=4,
)
NORM_TYPES = st.sampled_from([2.0, 1.0, 3.0, 0.5, math.inf])


def with_grads(grads: list[np.ndarray]) -> list[Tensor]:
    params = []
    for g in grads:
        p = Tensor(np.zeros(g.shape, dtype=np.float32), requires_grad=True)
        p.grad = Tensor(g.copy())
        params.append(p)
    return params


def reference_norm(grads: list[np.ndarray], q: float) -> float:
    g64 = [g.astype(np.float64) for g in grads]
    if q == math.inf:
        return max(float(np.abs(g).max()) for g in g64)
    return float(sum(float(np.sum(np.abs(g) ** q)) for g in g64) ** (1 / q))


# ---------------------------------------------------------------------------------------------- clipping
@given(GRADS, st.floats(1e-3, 1e3), NORM_TYPES)
def test_clip_grad_norm_matches_the_formula_in_float64(grads: list[np.ndarray], max_norm: float, q: float) -> None:
    params = with_grads(grads)
    arrays = [p.grad.data for p in params if p.grad is not None]
    total = clip_grad_norm_(params, max_norm, norm_type=q)
    expected = reference_norm(grads, q)
    assert isinstance(total, Tensor) and total.shape == () and total.dtype == np.float32
    assert abs(float(total.data) - expected) <= 1e-5 * expected + 1e-6
    coef = min(max_norm / (expected + 1e-6), 1.0)
    for p, g, array in zip(params, grads, arrays, strict=True):
        assert p.grad is not None and p.grad.data is array and p.grad.dtype == np.float32
        np.testing.assert_allclose(p.grad.data, g.astype(np.float64) * coef, rtol=3e-5, atol=1e-6)
    assert reference_norm([p.grad.data for p in params if p.grad is not None], q) <= max_norm * (1 + 3e-5) + 1e-6


def test_clip_grad_norm_handles_fortran_ordered_gradients_in_place() -> None:
    p = Tensor(np.zeros((30, 20), dtype=np.float32), requires_grad=True)
    g = np.asfortranarray(np.random.default_rng(0).standard_normal((30, 20)).astype(np.float32))
    p.grad = Tensor(g)
    expected = float(np.linalg.norm(g.astype(np.float64)))
    total = clip_grad_norm_(p, 1.0)
    assert abs(float(total.data) - expected) < 1e-5 * expected
    assert p.grad.data is g and g.flags.f_contiguous
    assert abs(float(np.linalg.norm(g.astype(np.float64))) - 1.0) < 1e-5


def test_clip_grad_norm_edge_cases() -> None:
    none = Tensor(np.ones(2, dtype=np.float32), requires_grad=True)
    zero = clip_grad_norm_([none], 1.0)
    assert float(zero.data) == 0.0 and zero.dtype == np.float32 and none.grad is None
    (z,) = with_grads([np.zeros(3, dtype=np.float32)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(clip_grad_norm_([z], 1.0).data) == 0.0
    (bad,) = with_grads([np.array([1.0, np.inf], dtype=np.float32)])
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_([bad], 1.0, error_if_nonfinite=True)
    assert bad.grad is not None
    np.testing.assert_array_equal(bad.grad.data, [1.0, np.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isinf(float(clip_grad_norm_([bad], 1.0).data))
    with pytest.raises(ValueError):
        clip_grad_norm_([bad], 1.0, norm_type=0.0)


@settings(deadline=None, max_examples=40)
@given(GRADS, st.floats(1e-2, 1e2), NORM_TYPES)
def test_clip_grad_norm_against_pytorch(grads: list[np.ndarray], max_norm: float, q: float) -> None:
    torch = pytest.importorskip("torch")
    params = with_grads(grads)
    tparams = [torch.zeros(g.shape, requires_grad=True) for g in grads]
    for tp, g in zip(tparams, grads, strict=True):
        tp.grad = torch.from_numpy(g.copy())
    ours = clip_grad_norm_(params, max_norm, norm_type=q)
    theirs = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type=q)
    np.testing.assert_allclose(float(ours.data), float(theirs), rtol=2e-5, atol=1e-6)
    for p, tp in zip(params, tparams, strict=True):
        assert p.grad is not None
        np.testing.assert_allclose(p.grad.data, tp.grad.numpy(), rtol=3e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- schedules
def hf_cosine(step: int, warmup: int, total: int, base: float, low: float) -> float:
    """Written independently: Hugging Face's warm-up, then cosine to `low`, then `low`."""
    if step < warmup:
        return base * step / max(1, warmup)
    if step >= total:
        return low
    return low + (base - low) * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


@given(st.integers(0, 30), st.integers(0, 60), st.floats(0, 1), st.floats(0, 1), st.integers(0, 100))
def test_cosine_with_warmup_matches_reference(warmup: int, extra: int, base: float, frac: float, step: int) -> None:
    total, low = warmup + extra, base * frac
    got = cosine_with_warmup(step, warmup, total, base, low)
    assert isinstance(got, float)
    assert abs(got - hf_cosine(step, warmup, total, base, low)) < 1e-12


def test_cosine_with_warmup_landmarks_and_errors() -> None:
    assert cosine_with_warmup(0, 10, 110, 1.0) == 0.0
    assert cosine_with_warmup(10, 10, 110, 1.0) == 1.0
    assert abs(cosine_with_warmup(60, 10, 110, 1.0, 0.2) - 0.6) < 1e-12
    assert cosine_with_warmup(110, 10, 110, 1.0, 0.2) == 0.2
    for bad in [(-1, 0, 1, 1.0), (0, -1, 1, 1.0), (0, 5, 4, 1.0), (0, 0, 1, -1.0)]:
        with pytest.raises(ValueError):
            cosine_with_warmup(*bad)


def one_param_groups(lrs: list[float]) -> tuple[SGD, list[Tensor]]:
    params = [Tensor(np.ones(2, dtype=np.float32), requires_grad=True) for _ in lrs]
    return SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs, strict=True)], lr=1.0), params


def test_scheduler_follows_the_pytorch_protocol_per_group() -> None:
    opt, _ = one_param_groups([0.5, 0.05])
    sched = WarmupCosineLR(opt, warmup_steps=3, total_steps=20, min_lr=0.001)
    assert sched.last_epoch == 0 and [g["initial_lr"] for g in opt.param_groups] == [0.5, 0.05]
    for k in range(0, 25):
        if k:
            sched.step()
        expected = [hf_cosine(k, 3, 20, base, 0.001) for base in (0.5, 0.05)]
        assert sched.last_epoch == k
        assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups]
        np.testing.assert_allclose(sched.get_last_lr(), expected, rtol=0, atol=1e-15)
    state = json.loads(json.dumps(sched.state_dict()))
    fresh_opt, _ = one_param_groups([0.5, 0.05])
    fresh = WarmupCosineLR(fresh_opt, warmup_steps=3, total_steps=20, min_lr=0.001)
    fresh.load_state_dict(state)
    assert [g["lr"] for g in fresh_opt.param_groups] == sched.get_last_lr()
    sched.step()
    fresh.step()
    assert fresh.get_last_lr() == sched.get_last_lr()
    with pytest.raises(KeyError):
        WarmupCosineLR(one_param_groups([0.1])[0], 0, 10, last_epoch=3)
    with pytest.raises(TypeError):
        WarmupCosineLR(object(), 0, 10)  # type: ignore[arg-type]


def test_scheduler_against_pytorch_lambda_lr() -> None:
    torch = pytest.importorskip("torch")
    opt, _ = one_param_groups([0.3])
    ours = WarmupCosineLR(opt, warmup_steps=5, total_steps=40, min_lr=0.0)
    tp = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=0.3)
    theirs = torch.optim.lr_scheduler.LambdaLR(topt, lambda s: hf_cosine(s, 5, 40, 1.0, 0.0))
    for _ in range(50):
        assert abs(ours.get_last_lr()[0] - theirs.get_last_lr()[0]) < 1e-15
        assert opt.param_groups[0]["initial_lr"] == topt.param_groups[0]["initial_lr"]
        topt.step()
        theirs.step()
        ours.step()


# ---------------------------------------------------------------------------------------------- NaN checks
def small_model(seed: int = 0, hidden: int = 8, classes: int = 3) -> Sequential:
    g = np.random.default_rng(seed)
    return Sequential(Linear(4, hidden, generator=g), ReLU(), Linear(hidden, classes, generator=g))


def test_check_finite_names_the_loss_or_the_first_bad_parameter() -> None:
    model = small_model()
    check_finite(Tensor(1.0), model, step=0)
    with pytest.raises(NonFiniteError, match=r"^loss is nan at step 12$"):
        check_finite(Tensor(float("nan")), model, step=12)
    with pytest.raises(FloatingPointError, match=r"^loss is -inf$"):
        check_finite(float("-inf"))
    grad = np.zeros((3, 8), dtype=np.float32)
    grad[1, :3] = np.inf
    last = model[2]
    assert isinstance(last, Linear)
    last.weight.grad = Tensor(grad)
    with pytest.raises(NonFiniteError) as info:
        check_finite(Tensor(0.5), model, step=12)
    assert str(info.value) == "gradient of '2.weight' has 3 inf values at step 12"
    assert (info.value.kind, info.value.name, info.value.step) == ("gradient", "2.weight", 12)
    first = model[0]
    assert isinstance(first, Linear) and first.bias is not None
    first.bias.data[0] = np.nan
    with pytest.raises(NonFiniteError, match=r"^value of '0.bias' has 1 nan value$"):
        check_finite(Tensor(0.5), model)


@given(hnp.arrays(np.float32, hnp.array_shapes(max_dims=3, max_side=6),
                  elements=st.sampled_from([0.0, 1.0, -3e38, 3e38, np.nan, np.inf, -np.inf])))
def test_count_nonfinite_counts_exactly(values: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = count_nonfinite(values)
    assert got == (int(np.isnan(values).sum()), int(np.isinf(values).sum()))
    assert count_nonfinite(np.asfortranarray(values)) == got
    if values.ndim == 2:
        assert count_nonfinite(values.T) == got


# ---------------------------------------------------------------------------------------------- checkpoints
BATCHES = [
    (Tensor(np.random.default_rng(i).standard_normal((5, 4)).astype(np.float32)),
     Tensor(np.random.default_rng(100 + i).integers(0, 3, 5)))
    for i in range(8)
]


def run(model: Module, opt: Optimizer, sched: WarmupCosineLR, batches: list[tuple[Tensor, Tensor]]) -> None:
    for x, y in batches:
        opt.zero_grad()
        CrossEntropyLoss()(model(x), y).backward()
        opt.step()
        sched.step()


def make_optimizer(kind: str, model: Module) -> Optimizer:
    if kind == "adam":
        return Adam(model.parameters(), lr=0.02, amsgrad=True)
    if kind == "adamw":
        return AdamW(model.parameters(), lr=0.02, betas=(0.8, 0.99))
    return SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
def test_checkpoint_restores_a_run_bit_for_bit(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "run.ckpt"  # any name: written at exactly this path
    model_a = small_model(0)
    opt_a = make_optimizer(kind, model_a)
    sched_a = WarmupCosineLR(opt_a, warmup_steps=2, total_steps=6, min_lr=1e-4)
    run(model_a, opt_a, sched_a, BATCHES[:4])
    save_checkpoint(path, model_a, opt_a, sched_a, epoch=4, tag="mid", mask=np.arange(3))
    run(model_a, opt_a, sched_a, BATCHES[4:])

    model_b = small_model(1)
    opt_b = make_optimizer(kind, model_b)
    sched_b = WarmupCosineLR(opt_b, warmup_steps=2, total_steps=6, min_lr=1e-4)
    extra = load_checkpoint(path, model_b, opt_b, sched_b)
    assert extra["epoch"] == 4 and extra["tag"] == "mid"
    np.testing.assert_array_equal(extra["mask"], np.arange(3))
    run(model_b, opt_b, sched_b, BATCHES[4:])
    for (name, a), (_, b) in zip(model_a.named_parameters(), model_b.named_parameters(), strict=True):
        assert b.dtype == np.float32 and np.array_equal(a.data, b.data), name
    assert opt_b.state_dict()["param_groups"] == opt_a.state_dict()["param_groups"]
    for index, fields in opt_a.state_dict()["state"].items():
        for key, value in fields.items():
            assert np.array_equal(value, opt_b.state_dict()["state"][index][key]), (index, key)
    assert sched_b.state_dict() == sched_a.state_dict()
    assert sorted(os.listdir(tmp_path)) == ["run.ckpt"]


def test_checkpoint_refuses_pickles_and_foreign_files(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str, str]]:
            return (io.open, (str(marker), "w"))

    model = small_model()
    pickled = tmp_path / "pickle.npz"
    pickled.write_bytes(pickle.dumps({"model": Payload()}))
    with pytest.raises(ValueError):
        load_checkpoint(pickled, model)
    objects = tmp_path / "objects.npz"
    entries: dict[str, Any] = {"__meta__": np.array("{}"), "model/0.weight": np.array([Payload()], dtype=object)}
    np.savez(objects, **entries)
    marker.unlink(missing_ok=True)
    with pytest.raises(ValueError):
        load_checkpoint(objects, model)
    plain = tmp_path / "plain.npz"
    np.savez(plain, weights=np.zeros(3))
    with pytest.raises(ValueError):
        load_checkpoint(plain, model)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError):
        load_checkpoint(single, model)
    assert not marker.exists(), "loading must never unpickle"


def test_checkpoint_refuses_torch_save_files(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError):
        load_checkpoint(path, small_model())


@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt])
def test_a_failed_save_leaves_the_old_checkpoint_and_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type[BaseException]
) -> None:
    path = tmp_path / "ckpt.npz"
    model = small_model(0)
    save_checkpoint(path, model, epoch=1)
    before = path.read_bytes()

    def half_write(file: Any, *args: Any, **kwds: Any) -> None:
        file.write(b"PK\x03\x04" + b"\0" * 100)  # the start of a zip, then the "crash"
        raise error("simulated crash")

    monkeypatch.setattr(np, "savez", half_write)
    with pytest.raises(error):
        save_checkpoint(path, small_model(1), epoch=2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]
    fresh = small_model(5)
    assert load_checkpoint(path, fresh) == {"epoch": 1}
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        assert np.array_equal(a.data, b.data)


def test_checkpoint_mismatches_raise(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    save_checkpoint(path, small_model(0))
    with pytest.raises(ValueError):
        load_checkpoint(path, small_model(0), Adam(small_model(0).parameters()))
    with pytest.raises((KeyError, ValueError)):
        load_checkpoint(path, small_model(0, hidden=5))
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "d.npz", small_model(0), note=object())
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]


# ---------------------------------------------------------------------------------------------- the loop
def blobs(n: int, seed: int) -> tuple[Tensor, Tensor]:
    g = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0, 3.0, 0.0], [3.0, 0.0, -2.0, 1.0], [-3.0, 1.0, -2.0, 0.0]])
    labels = g.integers(0, 3, n)
    return Tensor((centers[labels] + g.standard_normal((n, 4)) * 0.5).astype(np.float32)), Tensor(labels)


def loaders(seed: int = 0) -> tuple[DataLoader, DataLoader]:
    train = DataLoader(TensorDataset(*blobs(200, seed)), batch_size=25, shuffle=True,
                       generator=np.random.default_rng(seed))
    return train, DataLoader(TensorDataset(*blobs(100, seed + 1)), batch_size=40)


def test_fit_learns_a_separable_problem_and_fills_the_history(capsys: pytest.CaptureFixture[str]) -> None:
    model = small_model(0, hidden=16)
    opt = Adam(model.parameters(), lr=0.02)
    train, val = loaders()
    sched = WarmupCosineLR(opt, warmup_steps=8, total_steps=80)
    history = fit(model, CrossEntropyLoss(), opt, train, val, epochs=10, scheduler=sched, max_grad_norm=5.0,
                  progress=False)
    assert capsys.readouterr() == ("", "")
    assert isinstance(history, History) and history.epochs == 10
    for values in (history.train_loss, history.train_acc, history.val_loss, history.val_acc, history.lr,
                   history.epoch_time):
        assert len(values) == 10 and all(isinstance(v, float) for v in values)
    assert history.val_acc[-1] >= 0.97 and history.train_loss[-1] < history.train_loss[0] / 3
    assert sched.last_epoch == 80 and history.lr[-1] == cosine_with_warmup(79, 8, 80, 0.02)
    assert model.training
    assert evaluate(model, val, CrossEntropyLoss()) == (history.val_loss[-1], history.val_acc[-1])


def test_fit_progress_bar_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    model = small_model(0)
    train, _ = loaders()
    fit(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), train, epochs=1, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "epoch 1/1" in err and "loss=" in err and "lr=" in err


def test_fit_equals_the_loop_written_by_hand() -> None:
    model_a, model_b = small_model(3), small_model(3)
    opt_a, opt_b = SGD(model_a.parameters(), lr=0.05, momentum=0.9), SGD(model_b.parameters(), lr=0.05, momentum=0.9)
    train_a, _ = loaders(7)
    train_b, _ = loaders(7)
    sched_a, sched_b = WarmupCosineLR(opt_a, 4, 20), WarmupCosineLR(opt_b, 4, 20)
    fit(model_a, CrossEntropyLoss(), opt_a, train_a, epochs=3, scheduler=sched_a, progress=False)
    for _ in range(3):
        for x, y in train_b:
            opt_b.zero_grad()
            CrossEntropyLoss()(model_b(x), y).backward()
            opt_b.step()
            sched_b.step()
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert np.array_equal(a.data, b.data)


def test_fit_stops_on_divergence_before_the_bad_step() -> None:
    model = small_model(0)
    train, _ = loaders()
    opt = SGD(model.parameters(), lr=1e7)
    with np.errstate(all="ignore"), pytest.raises(NonFiniteError) as info:
        fit(model, CrossEntropyLoss(), opt, train, epochs=5, progress=False)
    assert info.value.step is not None and f"at step {info.value.step}" in str(info.value)
    assert all(count_nonfinite(p.data) == (0, 0) for p in model.parameters())


def test_fit_writes_a_checkpoint_every_epoch(tmp_path: Path) -> None:
    model = small_model(0)
    opt = Adam(model.parameters(), lr=0.01)
    train, val = loaders()
    history = fit(model, CrossEntropyLoss(), opt, train, val, epochs=2, progress=False, checkpoint=tmp_path / "c.npz")
    other = small_model(9)
    extra = load_checkpoint(tmp_path / "c.npz", other, Adam(other.parameters(), lr=0.01))
    assert extra["epoch"] == 2 and extra["step"] == 16 and extra["history"]["val_loss"] == history.val_loss
    for a, b in zip(model.parameters(), other.parameters(), strict=True):
        assert np.array_equal(a.data, b.data)


class ModeSpy(Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = Sequential(Linear(4, 3, generator=np.random.default_rng(0)), Dropout(0.5))
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append((self.training, is_grad_enabled()))
        out: Tensor = self.body(x)
        return out


@pytest.mark.parametrize("mode", [True, False])
def test_evaluate_uses_eval_and_no_grad_and_restores_the_mode(mode: bool) -> None:
    spy = ModeSpy().train(mode)
    _, val = loaders()
    loss, acc = evaluate(spy, val, CrossEntropyLoss())
    assert spy.seen == [(False, False)] * 3 and spy.training is mode and spy.body.training is mode
    assert is_grad_enabled() and all(p.grad is None for p in spy.parameters())
    assert isinstance(loss, float) and 0 <= acc <= 1


def test_evaluate_weights_batches_by_size_and_regression_has_no_accuracy() -> None:
    g = np.random.default_rng(0)
    x, t = g.standard_normal((10, 4)).astype(np.float32), g.standard_normal((10, 2)).astype(np.float32)
    lin = Linear(4, 2, generator=g)
    loss, acc = evaluate(lin, DataLoader(TensorDataset(Tensor(x), Tensor(t)), batch_size=4), MSELoss())
    assert lin.bias is not None
    pred = x.astype(np.float64) @ lin.weight.data.T.astype(np.float64) + lin.bias.data
    assert abs(loss - float(np.mean((pred - t) ** 2))) < 1e-5 and math.isnan(acc)
    with pytest.raises(ValueError):
        evaluate(lin, [], MSELoss())


def test_train_step_clips_before_the_optimizer_step() -> None:
    model = small_model(1)
    seen: list[float] = []

    class Spy(SGD):
        def step(self) -> None:
            grads = [p.grad.data for g in self.param_groups for p in g["params"] if p.grad is not None]
            seen.append(reference_norm(grads, 2.0))
            super().step()

    x, y = BATCHES[0]
    loss, logits = train_step(model, CrossEntropyLoss(), Spy(model.parameters(), lr=0.1), Tensor(x.data * 100), y,
                              max_grad_norm=0.01, step=0)
    assert isinstance(loss, float) and logits.shape == (5, 3) and seen[0] <= 0.01 * (1 + 1e-5)


def test_plot_history_writes_a_png(tmp_path: Path) -> None:
    history = History(train_loss=[1.0, 0.5], train_acc=[0.5, 0.8], val_loss=[0.9, 0.6], val_acc=[0.6, 0.7],
                      lr=[0.1, 0.05], epoch_time=[0.1, 0.1])
    fig = plot_history(history, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")
    assert len(fig.axes) == 2
    assert plot_history(History(train_loss=[1.0], train_acc=[math.nan])) is not None


# ---------------------------------------------------------------------- gradient accumulation
def accumulation_data(n: int = 96, seed: int = 21) -> TensorDataset:
    g = np.random.default_rng(seed)
    return TensorDataset(Tensor(g.standard_normal((n, 5)).astype(np.float32)), Tensor(g.integers(0, 4, n)))


def accumulation_model(seed: int = 22) -> Sequential:
    """No dropout: a micro-batch computes exactly what its rows of a large batch compute."""
    g = np.random.default_rng(seed)
    return Sequential(Linear(5, 16, generator=g), ReLU(), Linear(16, 4, generator=g))


@pytest.mark.parametrize(("k", "b"), [(2, 24), (4, 12), (3, 8)])
@pytest.mark.parametrize("opt_class", [SGD, Adam])
def test_k_micro_batches_of_b_give_the_parameters_of_one_batch_of_k_times_b(
    k: int, b: int, opt_class: type[Optimizer]
) -> None:
    data = accumulation_data(n=2 * k * b)  # two optimizer steps per epoch, no leftover group
    kwargs: dict[str, Any] = {"lr": 0.1, "momentum": 0.9} if opt_class is SGD else {"lr": 0.01}
    big, small = accumulation_model(), accumulation_model()
    big_opt, small_opt = opt_class(big.parameters(), **kwargs), opt_class(small.parameters(), **kwargs)  # type: ignore[call-arg]
    big_sched = WarmupCosineLR(big_opt, warmup_steps=1, total_steps=6)
    small_sched = WarmupCosineLR(small_opt, warmup_steps=1, total_steps=6)
    big_hist = fit(big, CrossEntropyLoss(), big_opt, DataLoader(data, batch_size=k * b), epochs=3,
                   scheduler=big_sched, max_grad_norm=1.0, progress=False)
    small_hist = fit(small, CrossEntropyLoss(), small_opt, DataLoader(data, batch_size=b), epochs=3,
                     scheduler=small_sched, max_grad_norm=1.0, progress=False, accumulation_steps=k)
    assert small_sched.last_epoch == big_sched.last_epoch == 6  # one scheduler step per optimizer step
    for (name, p), q in zip(big.named_parameters(), small.parameters(), strict=True):
        np.testing.assert_allclose(q.data, p.data, rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(small_hist.train_loss, big_hist.train_loss, rtol=1e-5)
    assert small_hist.lr == big_hist.lr


def test_one_micro_batch_is_train_step_bit_for_bit() -> None:
    x, y = accumulation_data()[:32]
    m1, m2 = accumulation_model(), accumulation_model()
    o1, o2 = Adam(m1.parameters(), lr=0.01), Adam(m2.parameters(), lr=0.01)
    for step in range(3):
        loss, _ = train_step(m1, CrossEntropyLoss(), o1, x, y, 0.5, step)
        [(loss2, _)] = train_step_accumulated(m2, CrossEntropyLoss(), o2, [(x, y)], 0.5, step)
        assert loss == loss2
    for p, q in zip(m1.parameters(), m2.parameters(), strict=True):
        assert np.array_equal(p.data, q.data)


def test_the_leftover_group_of_an_epoch_makes_its_own_step(tmp_path: Path) -> None:
    data = accumulation_data(n=80)  # 5 batches of 16 with k = 2: groups of 2, 2 and 1
    model, hand = accumulation_model(), accumulation_model()
    opt, hand_opt = SGD(model.parameters(), lr=0.2), SGD(hand.parameters(), lr=0.2)
    fit(model, CrossEntropyLoss(), opt, DataLoader(data, batch_size=16), epochs=2, progress=False,
        accumulation_steps=2, checkpoint=tmp_path / "c.npz")
    batches = list(DataLoader(data, batch_size=16))
    for _ in range(2):
        for group in (batches[0:2], batches[2:4], batches[4:5]):
            train_step_accumulated(hand, CrossEntropyLoss(), hand_opt, group)
    for p, q in zip(model.parameters(), hand.parameters(), strict=True):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-6, atol=1e-7)
    assert load_checkpoint(tmp_path / "c.npz", accumulation_model())["step"] == 6
    with pytest.raises(ValueError):
        fit(model, CrossEntropyLoss(), opt, DataLoader(data, batch_size=16), progress=False, accumulation_steps=0)
    with pytest.raises(ValueError):
        train_step_accumulated(model, CrossEntropyLoss(), opt, [])


def test_accumulation_reports_a_nan_micro_batch_before_the_step() -> None:
    x, y = accumulation_data()[:16]
    bad = x.data.copy()
    bad[3, 2] = np.nan
    model = accumulation_model()
    before = [p.data.copy() for p in model.parameters()]
    with np.errstate(all="ignore"), pytest.raises(NonFiniteError, match="loss has 1 nan value at step 7"):
        train_step_accumulated(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1),
                               [(x, y), (Tensor(bad), y)], step=7)
    for p, b0 in zip(model.parameters(), before, strict=True):
        assert np.array_equal(p.data, b0)
