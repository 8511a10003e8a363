"""Module 16: pruning masks that survive training, channel pruning, CSR, low rank and distillation, checked
against central differences, properties, and PyTorch (``torch.nn.utils.prune``, ``F.kl_div``) when installed."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.core.autograd import gradcheck
from tinytorch.core.convolutions import Conv2d, Flatten, MaxPool2d
from tinytorch.core.layers import Linear, Module, ReLU, Sequential, Sigmoid
from tinytorch.core.optimizers import SGD, Adam
from tinytorch.core.tensor import Tensor
from tinytorch.perf.compression import (
    CSRMatrix,
    LowRankLinear,
    PrunedLayer,
    distillation_loss,
    global_magnitude_masks,
    keep_channels,
    l1_unstructured_mask,
    low_rank_factors,
    magnitude_prune,
    prune_channels,
    rank_for_energy,
    remove,
    remove_pruning,
    sparsity,
    to_csr,
)


def small_cnn(seed: int = 0, c1: int = 6, c2: int = 8) -> Sequential:
    g = np.random.default_rng(seed)
    return Sequential(Conv2d(1, c1, 3, padding=1, generator=g), ReLU(), MaxPool2d(2),
                      Conv2d(c1, c2, 3, padding=1, generator=g), ReLU(), MaxPool2d(2), Flatten(),
                      Linear(c2 * 4, 12, generator=g), ReLU(), Linear(12, 10, generator=g))


def images(n: int = 5, seed: int = 1) -> Tensor:
    return Tensor(np.random.default_rng(seed).normal(size=(n, 1, 8, 8)).astype(np.float32))


@pytest.mark.parametrize("make_opt", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True),
    lambda ps: Adam(ps, lr=0.05, weight_decay=1e-2),
])
def test_masks_survive_optimizer_steps_with_momentum(make_opt: Any) -> None:
    model = small_cnn()
    opt = make_opt(list(model.parameters()))
    x, y = images(8), Tensor(np.arange(8) % 10)
    from tinytorch.core.losses import cross_entropy

    for _ in range(3):
        opt.zero_grad()
        cross_entropy(model(x), y).backward()
        opt.step()
    magnitude_prune(model, 0.6)
    pruned = [m for m in model.modules() if isinstance(m, PrunedLayer)]
    assert len(pruned) == 4 and abs(sparsity(model) - 0.6) < 1e-3
    for _ in range(6):
        opt.zero_grad()
        cross_entropy(model(x), y).backward()
        for layer in pruned:
            assert layer.weight_orig.grad is not None
            assert np.all(layer.weight_orig.grad.data[layer.weight_mask == 0] == 0)
        opt.step()
        for layer in pruned:
            assert np.all(layer.weight.data[layer.weight_mask == 0] == 0)
    assert abs(sparsity(model) - 0.6) < 1e-3
    remove_pruning(model)
    assert not any(isinstance(m, PrunedLayer) for m in model.modules())
    assert abs(sparsity(model) - 0.6) < 1e-3


def test_pruned_layer_gradient_is_the_masked_dense_gradient() -> None:
    rng = np.random.default_rng(0)
    conv = Conv2d(2, 3, 3, stride=2, padding=1, generator=rng)
    plain = copy.deepcopy(conv)
    mask = l1_unstructured_mask(conv.weight.data, 0.5)
    plain.weight.data *= mask
    layer = PrunedLayer(conv, mask)
    x = Tensor(rng.normal(size=(2, 2, 5, 5)).astype(np.float32))
    (layer(x) ** 2).sum().backward()
    (plain(x) ** 2).sum().backward()
    assert layer.weight_orig.grad is not None and plain.weight.grad is not None
    assert np.allclose(layer.weight_orig.grad.data, plain.weight.grad.data * mask, atol=1e-4)
    assert np.allclose(layer(x).data, plain(x).data, atol=1e-5)
    x64 = Tensor(rng.normal(size=(1, 2, 5, 5)), dtype=np.float64, requires_grad=True)
    assert gradcheck(lambda inp: (layer(inp) ** 2).sum(), x64, atol=1e-3, rtol=1e-2)


def test_magnitude_prune_is_global_and_in_place_like_torch() -> None:
    torch = pytest.importorskip("torch")
    prune = pytest.importorskip("torch.nn.utils.prune")
    model = small_cnn(seed=3)
    weights = [m.weight.data.copy() for m in model.modules() if isinstance(m, Linear | Conv2d)]
    assert magnitude_prune(model, 0.7) is model
    ours = [m.weight_mask for m in model.modules() if isinstance(m, PrunedLayer)]
    tl = [torch.nn.Linear(1, 1) for _ in weights]
    for t, w in zip(tl, weights, strict=True):
        t.weight = torch.nn.Parameter(torch.from_numpy(w))
    prune.global_unstructured([(t, "weight") for t in tl], pruning_method=prune.L1Unstructured, amount=0.7)
    for t, mask in zip(tl, ours, strict=True):
        assert np.array_equal(t.weight_mask.numpy(), mask)
    for amount in (0.0, 0.33, 0.5, 1.0, 5):
        w = weights[0]
        tc = torch.nn.Linear(1, 1)
        tc.weight = torch.nn.Parameter(torch.from_numpy(w.copy()))
        prune.l1_unstructured(tc, "weight", amount=amount)
        assert np.array_equal(tc.weight_mask.numpy(), l1_unstructured_mask(w, amount))


def test_keep_channels_matches_ln_structured() -> None:
    torch = pytest.importorskip("torch")
    prune = pytest.importorskip("torch.nn.utils.prune")
    rng = np.random.default_rng(2)
    for n in (1, 2):
        for amount in (0.25, 0.5, 0.9):
            w = rng.normal(size=(12, 3, 3, 3)).astype(np.float32)
            tc = torch.nn.Conv2d(3, 12, 3)
            tc.weight = torch.nn.Parameter(torch.from_numpy(w))
            prune.ln_structured(tc, "weight", amount=amount, n=n, dim=0)
            kept = np.flatnonzero(tc.weight_mask.numpy().reshape(12, -1).any(axis=1))
            assert np.array_equal(kept, keep_channels(w, amount, norm=n))


@settings(max_examples=15, deadline=None)
@given(amount=st.floats(0.0, 1.0), seed=st.integers(0, 2**16), c1=st.integers(1, 6), c2=st.integers(1, 6))
def test_channel_pruning_equals_zeroing_the_channels(amount: float, seed: int, c1: int, c2: int) -> None:
    model = small_cnn(seed, c1, c2)
    small = prune_channels(model, amount)
    zeroed = copy.deepcopy(model)
    weighted = [m for m in zeroed if isinstance(m, Linear | Conv2d)][:-1]
    for layer in weighted:
        keep = keep_channels(layer.weight.data, amount)
        drop = np.setdiff1d(np.arange(layer.weight.shape[0]), keep)
        layer.weight.data[drop] = 0
        assert layer.bias is not None
        layer.bias.data[drop] = 0
    x = images(3, seed)
    assert np.allclose(small(x).data, zeroed(x).data, atol=1e-5)
    assert sum(p.numel() for p in small.parameters()) <= sum(p.numel() for p in model.parameters())
    first = small[0]
    assert isinstance(first, Conv2d) and first.weight.shape[0] == max(1, c1 - round(amount * c1))


def test_prune_channels_refuses_layers_it_cannot_prune_through() -> None:
    with pytest.raises(TypeError, match="Sigmoid"):
        prune_channels(Sequential(Linear(3, 4), Sigmoid(), Linear(4, 2)), 0.5)
    pruned = magnitude_prune(Sequential(Linear(3, 4), ReLU(), Linear(4, 2)), 0.5)
    assert isinstance(pruned, Sequential)
    with pytest.raises(TypeError, match="PrunedLayer"):
        prune_channels(pruned, 0.5)


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 9), cols=st.integers(1, 9), density=st.floats(0.0, 1.0), k=st.integers(0, 3),
       seed=st.integers(0, 2**16))
def test_csr_round_trip_and_products(rows: int, cols: int, density: float, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    dense = (rng.normal(size=(rows, cols)) * (rng.random((rows, cols)) < density)).astype(np.float32)
    csr = to_csr(dense)
    assert csr.nnz == np.count_nonzero(dense) and np.array_equal(csr.to_dense(), dense)
    assert csr.nbytes == csr.nnz * 8 + (rows + 1) * 4
    x = rng.normal(size=(cols, k) if k else (cols,)).astype(np.float32)
    assert np.allclose(csr @ x, dense @ x, atol=1e-5)


def test_csr_against_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    dense = (rng.normal(size=(6, 7)) * (rng.random((6, 7)) < 0.3)).astype(np.float32)
    ours = CSRMatrix.from_dense(dense)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Sparse CSR tensor support is in beta state"
        theirs = torch.from_numpy(dense).to_sparse_csr()
    assert np.array_equal(ours.indptr, theirs.crow_indices().numpy())
    assert np.array_equal(ours.indices, theirs.col_indices().numpy())
    assert np.array_equal(ours.data, theirs.values().numpy())


@settings(max_examples=20, deadline=None)
@given(out=st.integers(1, 8), inp=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_low_rank_is_the_best_approximation(out: int, inp: int, seed: int) -> None:
    w = np.random.default_rng(seed).normal(size=(out, inp))
    s = np.linalg.svd(w, compute_uv=False)
    for r in range(1, min(out, inp) + 1):
        a, b = low_rank_factors(w, r)
        assert abs(np.linalg.norm(w - a @ b) - np.sqrt((s[r:] ** 2).sum())) < 1e-8
    r90 = rank_for_energy(s, 0.9)
    assert (s[:r90] ** 2).sum() >= 0.9 * (s**2).sum() - 1e-12
    assert r90 == 1 or (s[: r90 - 1] ** 2).sum() < 0.9 * (s**2).sum()


def test_low_rank_linear_trains_and_matches_at_full_rank() -> None:
    full = Linear(10, 6, generator=np.random.default_rng(0))
    low = LowRankLinear.from_linear(full, rank=6)
    x = Tensor(np.random.default_rng(1).normal(size=(4, 10)).astype(np.float32))
    assert np.allclose(low(x).data, full(x).data, atol=1e-5)
    (low(x) ** 2).sum().backward()
    assert all(p.grad is not None for p in low.parameters())
    assert repr(low).startswith("LowRankLinear(\n  in_features=10, out_features=6, rank=6\n  (first): Linear(")


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 5), c=st.integers(2, 6), t=st.floats(0.5, 8.0), alpha=st.floats(0.0, 1.0),
       seed=st.integers(0, 2**16))
def test_distillation_gradient_against_central_differences(n: int, c: int, t: float, alpha: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    s = Tensor(rng.normal(size=(n, c)) * 2, dtype=np.float64, requires_grad=True)
    teacher = Tensor(rng.normal(size=(n, c)) * 3, dtype=np.float64)
    y = Tensor(rng.integers(0, c, size=n))
    assert gradcheck(lambda z: distillation_loss(z, teacher, y, T=t, alpha=alpha), s)


def test_distillation_against_torch_formula_and_gradient() -> None:
    torch = pytest.importorskip("torch")
    f = torch.nn.functional
    rng = np.random.default_rng(5)
    s_np, t_np, y_np = rng.normal(size=(7, 10)), rng.normal(size=(7, 10)) * 2, rng.integers(0, 10, size=7)
    for t_value, alpha in ((1.0, 0.5), (4.0, 0.9), (2.5, 0.0), (3.0, 1.0)):
        ours_s = Tensor(s_np, dtype=np.float64, requires_grad=True)
        ours_t = Tensor(t_np, dtype=np.float64, requires_grad=True)
        ours = distillation_loss(ours_s, ours_t, Tensor(y_np), T=t_value, alpha=alpha)
        ours.backward()
        st_ = torch.tensor(s_np, requires_grad=True)
        tt_ = torch.tensor(t_np, requires_grad=True)
        kl = f.kl_div(f.log_softmax(st_ / t_value, -1), f.log_softmax(tt_.detach() / t_value, -1),
                      reduction="batchmean", log_target=True)
        ref = alpha * t_value**2 * kl + (1 - alpha) * f.cross_entropy(st_, torch.tensor(y_np))
        ref.backward()
        assert abs(float(ours.item()) - ref.item()) < 1e-10
        assert ours_s.grad is not None and np.allclose(ours_s.grad.data, st_.grad.numpy(), atol=1e-10)
        assert ours_t.grad is None and tt_.grad is None


def test_the_api_milestone_2018_calls() -> None:
    model = small_cnn(seed=7)
    before = [p.data.copy() for p in model.parameters()]
    smaller = prune_channels(model, 0.5)
    assert isinstance(smaller, Sequential) and smaller is not model
    assert [p.data for p in model.parameters()] and all(
        np.array_equal(a, p.data) for a, p in zip(before, model.parameters(), strict=True))
    assert sum(p.numel() for p in smaller.parameters()) < sum(p.numel() for p in model.parameters())
    assert sparsity(model) == 0.0
    same: Module = magnitude_prune(model, 0.9)
    assert same is model and abs(sparsity(model) - 0.9) < 1e-3
    with pytest.raises(ValueError, match="amount"):
        magnitude_prune(model, 1.5)
    assert isinstance(remove(next(m for m in model.modules() if isinstance(m, PrunedLayer))), Conv2d)
    assert global_magnitude_masks([np.ones(3)], 0)[0].tolist() == [1, 1, 1]
