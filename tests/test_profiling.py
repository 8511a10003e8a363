"""Module 14: parameter counts, FLOP formulas against PyTorch's FlopCounterMode, the per-layer table, latency."""

from __future__ import annotations

import cProfile
import dataclasses
import itertools
import math
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.core.activations import ReLU
from tinytorch.core.convolutions import Conv2d, Flatten, MaxPool2d
from tinytorch.core.layers import Linear, Parameter, Sequential
from tinytorch.core.tensor import Tensor
from tinytorch.models.transformer import GPT, gpt_num_params, training_flops_per_token
from tinytorch.perf.profiling import (
    FunctionTime,
    LatencyStats,
    LayerProfile,
    attention_flops,
    conv2d_flops,
    count_parameters,
    gpt_layer_flops,
    linear_flops,
    measure_latency,
    parameter_bytes,
    peak_activation_bytes,
    profile_model,
    top_functions,
)


def lenet5(seed: int = 0) -> Sequential:
    gen = np.random.default_rng(seed)
    return Sequential(
        Conv2d(1, 6, 5, padding=2, generator=gen), ReLU(), MaxPool2d(2),
        Conv2d(6, 16, 5, generator=gen), ReLU(), MaxPool2d(2),
        Flatten(),
        Linear(400, 120, generator=gen), ReLU(),
        Linear(120, 84, generator=gen), ReLU(),
        Linear(84, 10, generator=gen),
    )


# ----------------------------------------------------------------------------------------- latency (module 19's API)
def test_latency_stats_is_the_fixed_frozen_dataclass() -> None:
    fields = [f.name for f in dataclasses.fields(LatencyStats)]
    assert fields == ["samples", "median", "q1", "q3", "minimum", "maximum"]
    stats = LatencyStats(samples=(1.0, 2.0), median=1.5, q1=1.25, q3=1.75, minimum=1.0, maximum=2.0)
    assert stats.iqr == 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.median = 0.0  # type: ignore[misc]


@settings(max_examples=20, deadline=None)
@given(warmup=st.integers(0, 4), repeats=st.integers(1, 9), inner=st.integers(1, 4))
def test_measure_latency_calls_and_summary(warmup: int, repeats: int, inner: int) -> None:
    calls = [0]

    def fn() -> None:
        calls[0] += 1

    stats = measure_latency(fn, warmup=warmup, repeats=repeats, inner=inner)
    assert calls[0] == warmup + repeats * inner
    assert len(stats.samples) == repeats and all(type(s) is float for s in stats.samples)
    q1, q3 = np.percentile(stats.samples, [25, 75])
    assert stats.median == float(np.median(stats.samples)) and math.isclose(stats.q1, q1)
    assert math.isclose(stats.q3, q3) and math.isclose(stats.iqr, q3 - q1)
    assert stats.minimum == min(stats.samples) and stats.maximum == max(stats.samples)
    assert all(type(v) is float for v in (stats.median, stats.q1, stats.q3, stats.minimum, stats.maximum))


def test_measure_latency_times_per_call_and_skips_the_warmup() -> None:
    pending = [0.3]
    stats = measure_latency(lambda: time.sleep(pending.pop() if pending else 0.002), warmup=1, repeats=3, inner=2)
    assert all(0.0019 < s < 0.2 for s in stats.samples), stats.samples


@pytest.mark.parametrize("bad", [{"warmup": -1}, {"repeats": 0}, {"inner": 0}])
def test_measure_latency_refuses_bad_arguments_before_calling(bad: dict[str, int]) -> None:
    calls: list[int] = []
    with pytest.raises(ValueError, match=next(iter(bad))):
        measure_latency(lambda: calls.append(1), **bad)
    assert not calls


# ----------------------------------------------------------------------------------------------------- parameters
def test_parameter_counts_and_bytes() -> None:
    assert count_parameters(lenet5()) == 61_706 and parameter_bytes(lenet5()) == 4 * 61_706
    for shape in [(65, 16, 2, 2, 32), (50, 8, 3, 4, 16)]:
        gpt = GPT(*shape, generator=np.random.default_rng(0))
        vocab, block, n_layer, _, n_embd = shape
        assert count_parameters(gpt) == gpt_num_params(vocab, block, n_layer, n_embd, non_embedding=False)
        assert count_parameters(gpt) == gpt.get_num_params(non_embedding=False)
    layer = Linear(10, 3, bias=False)
    layer.weight = Parameter(Tensor(np.ones((3, 10)), dtype=np.int8), requires_grad=False)
    assert parameter_bytes(layer) == 30 and count_parameters(layer) == 30


def test_parameter_counts_match_pytorch() -> None:
    torch = pytest.importorskip("torch")
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Conv2d(6, 16, 5),
        torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(400, 120), torch.nn.ReLU(),
        torch.nn.Linear(120, 84), torch.nn.ReLU(), torch.nn.Linear(84, 10),
    )
    assert count_parameters(lenet5()) == sum(p.numel() for p in theirs.parameters())


# ----------------------------------------------------------------------------------- FLOPs against FlopCounterMode
def torch_flops(fn: Any) -> int:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


@settings(max_examples=15, deadline=None)
@given(lead=st.lists(st.integers(1, 5), min_size=0, max_size=2), fin=st.integers(1, 9), fout=st.integers(1, 9))
def test_linear_flops_against_flop_counter(lead: list[int], fin: int, fout: int) -> None:
    torch = pytest.importorskip("torch")
    layer = torch.nn.Linear(fin, fout)
    x = torch.zeros(*lead, fin)
    assert linear_flops((*lead, fin), fout) == torch_flops(lambda: layer(x))


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 3), c_in=st.integers(1, 3), c_out=st.integers(1, 4), size=st.tuples(st.integers(5, 12),
                                                                                      st.integers(5, 12)),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)), stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
)
def test_conv2d_flops_against_flop_counter(
    n: int, c_in: int, c_out: int, size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
    padding: tuple[int, int],
) -> None:
    torch = pytest.importorskip("torch")
    layer = torch.nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding)
    x = torch.zeros(n, c_in, *size)
    assert conv2d_flops((n, c_in, *size), c_out, kernel, stride, padding) == torch_flops(lambda: layer(x))
    ours = Conv2d(c_in, c_out, kernel, stride=stride, padding=padding)
    assert ours(Tensor(np.zeros((n, c_in, *size), dtype=np.float32))).shape == tuple(layer(x).shape)
    if kernel[0] == kernel[1] and stride[0] == stride[1] and padding[0] == padding[1]:
        assert conv2d_flops((n, c_in, *size), c_out, kernel[0], stride[0], padding[0]) == torch_flops(
            lambda: layer(x))


@settings(max_examples=15, deadline=None)
@given(b=st.integers(1, 3), h=st.integers(1, 4), q=st.integers(1, 9), kv=st.integers(1, 9), d=st.integers(1, 8),
       causal=st.booleans())
def test_attention_flops_against_flop_counter(b: int, h: int, q: int, kv: int, d: int, causal: bool) -> None:
    torch = pytest.importorskip("torch")
    if causal:
        kv = q
    qt, kt, vt = torch.zeros(b, h, q, d), torch.zeros(b, h, kv, d), torch.zeros(b, h, kv, d)
    counted = torch_flops(lambda: torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=causal))
    assert attention_flops(b, h, q, kv, d) == counted


def torch_gpt_flops(torch: Any, vocab: int, block: int, n_layer: int, n_head: int, c: int, b: int, t: int) -> int:
    """FlopCounterMode's count for nanoGPT's forward pass with module 13's shapes."""
    functional = torch.nn.functional

    def block_forward(x: Any, layers: dict[str, Any]) -> Any:
        q, k, v = (z.view(b, t, n_head, c // n_head).transpose(1, 2)
                   for z in layers["c_attn"](layers["ln_1"](x)).split(c, dim=2))
        y = functional.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
        x = x + layers["attn_proj"](y)
        return x + layers["mlp_proj"](functional.gelu(layers["c_fc"](layers["ln_2"](x))))

    stacks = [
        {"ln_1": torch.nn.LayerNorm(c), "c_attn": torch.nn.Linear(c, 3 * c), "attn_proj": torch.nn.Linear(c, c),
         "ln_2": torch.nn.LayerNorm(c), "c_fc": torch.nn.Linear(c, 4 * c), "mlp_proj": torch.nn.Linear(4 * c, c)}
        for _ in range(n_layer)
    ]
    wte, wpe, ln_f = torch.nn.Embedding(vocab, c), torch.nn.Embedding(block, c), torch.nn.LayerNorm(c)

    def forward() -> None:
        x = wte(torch.zeros(b, t, dtype=torch.long)) + wpe(torch.arange(t))
        for layers in stacks:
            x = block_forward(x, layers)
        ln_f(x) @ wte.weight.T

    return torch_flops(forward)


@pytest.mark.parametrize(("shape", "b", "t"), [((65, 64, 2, 4, 64), 4, 64), ((50, 16, 3, 2, 32), 2, 11)])
def test_whole_gpt_flops(shape: tuple[int, int, int, int, int], b: int, t: int) -> None:
    vocab, block, n_layer, n_head, c = shape
    table = gpt_layer_flops(GPT(*shape, generator=np.random.default_rng(0)), b, t)
    n = gpt_num_params(vocab, block, n_layer, c)
    outside_products = n_layer * 13 * c + 2 * c  # biases and LayerNorm weights, counted by the 6N rule
    assert 3 * sum(table.values()) == b * t * (training_flops_per_token(n, n_layer, c, t) - 6 * outside_products)
    torch = pytest.importorskip("torch")
    assert sum(table.values()) == torch_gpt_flops(torch, vocab, block, n_layer, n_head, c, b, t)


# ------------------------------------------------------------------------------------------------ the layer table
def test_profile_model_matches_the_model_and_flop_counter() -> None:
    model = lenet5()
    x = Tensor(np.random.default_rng(0).normal(size=(8, 1, 28, 28)).astype(np.float32))
    rows = profile_model(model, x)
    assert all(isinstance(r, LayerProfile) for r in rows) and len(rows) == 12
    assert rows[-1].output_shape == model(x).shape == (8, 10)
    assert sum(r.params for r in rows) == count_parameters(model)
    assert [r.activation_bytes for r in rows][:3] == [8 * 6 * 28 * 28 * 4] * 2 + [8 * 6 * 14 * 14 * 4]
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Conv2d(6, 16, 5),
        torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(400, 120), torch.nn.ReLU(),
        torch.nn.Linear(120, 84), torch.nn.ReLU(), torch.nn.Linear(84, 10),
    )
    with FlopCounterMode(display=False) as counter:
        theirs(torch.zeros(8, 1, 28, 28))
    per_module = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    for r in rows:
        assert r.flops == per_module.get(f"Sequential.{r.name}", 0), r


def test_profile_model_keeps_no_graph_and_refuses_a_leaf() -> None:
    x = Tensor(np.ones((2, 72), dtype=np.float32), requires_grad=True)
    model = Sequential(Linear(72, 3))
    assert profile_model(model, x)[0].output_shape == (2, 3)
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="no children"):
        profile_model(Linear(3, 2), Tensor(np.zeros((1, 3), dtype=np.float32)))


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(0, 10**6), max_size=8))
def test_peak_activation_bytes(sizes: list[int]) -> None:
    rows = [LayerProfile(str(i), "Linear", (1,), 0, 0, b) for i, b in enumerate(sizes)]
    assert peak_activation_bytes(rows, keep_graph=True) == sum(sizes)
    pairs = [sizes[0]] + [a + b for a, b in itertools.pairwise(sizes)] if sizes else [0]
    assert peak_activation_bytes(rows, keep_graph=False) == max(pairs)


def test_peak_activation_bytes_bounds_the_traced_peak_from_below() -> None:
    import tracemalloc

    model = lenet5()
    x = Tensor(np.random.default_rng(0).normal(size=(64, 1, 28, 28)).astype(np.float32))
    rows = profile_model(model, x)
    model(x)  # first-use allocations
    tracemalloc.start()
    out = model(x)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert out.grad_fn is not None
    assert peak_activation_bytes(rows, keep_graph=True) <= peak < 3 * peak_activation_bytes(rows, keep_graph=True)


def _nap() -> None:
    time.sleep(0.005)


def _twice() -> None:
    _nap()
    _nap()


def test_top_functions_reads_cprofile() -> None:
    profile = cProfile.Profile()
    profile.runcall(_twice)
    rows = top_functions(profile, limit=50)
    assert all(isinstance(r, FunctionTime) for r in rows)
    assert rows[0].name == f"_twice (test_profiling.py:{_twice.__code__.co_firstlineno})" and rows[0].calls == 1
    assert [r.cumtime for r in rows] == sorted((r.cumtime for r in rows), reverse=True)
    own = top_functions(profile, sort="tottime", limit=1)
    assert own[0].name == "<built-in method time.sleep>" and own[0].calls == 2 and own[0].tottime >= 0.009
    with pytest.raises(ValueError, match="'calls'"):
        top_functions(profile, sort="calls")
    with pytest.raises(ValueError, match="limit"):
        top_functions(profile, limit=0)
