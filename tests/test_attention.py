"""Module 12: the attention op's rule against central differences (hypothesis over shapes and masks), the masks'
meaning, causality (no peeking, and weights that are not uniform), and agreement with PyTorch when installed."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinytorch as tt
from tinytorch.core.activations import softmax
from tinytorch.core.attention import (
    SDPA,
    MultiheadAttention,
    _attention_backward,
    attention,
    attention_bias,
    attention_loops,
    scaled_dot_product_attention,
)
from tinytorch.core.autograd import RULES, gradcheck, saved_reads
from tinytorch.core.tensor import Tensor, manual_seed

Array = npt.NDArray[Any]


def f64(a: Array, requires_grad: bool = False) -> Tensor:
    return Tensor(a, dtype=np.float64, requires_grad=requires_grad)


def reference(q: Array, k: Array, v: Array, bias: Array | None, scale: float) -> tuple[Array, Array]:
    """NumPy attention with an additive bias; fully masked rows give zeros."""
    scores = np.matmul(q, np.swapaxes(k, -1, -2)) * scale
    if bias is not None:
        scores = scores + bias
    top = scores.max(axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    e = np.exp(scores - top)
    total = e.sum(axis=-1, keepdims=True)
    p = e / np.where(total == 0, 1.0, total)
    return np.matmul(p, v), p


def test_the_rule_is_registered_and_reads_only_what_the_op_saves() -> None:
    assert RULES[SDPA] is _attention_backward
    assert saved_reads(_attention_backward) == {"weights", "dropout_mask", "scale"}


@st.composite
def attention_case(draw: st.DrawFn) -> dict[str, Any]:
    batch = tuple(draw(st.lists(st.integers(1, 2), min_size=0, max_size=2)))
    target_len, source_len = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dim, dim_v = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    gen = np.random.default_rng(draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(["none", "bool", "float", "causal"]))
    case: dict[str, Any] = {
        "q": gen.standard_normal((*batch, target_len, dim)),
        "k": gen.standard_normal((*batch, source_len, dim)),
        "v": gen.standard_normal((*batch, source_len, dim_v)),
        "scale": draw(st.sampled_from([None, 0.5, 2.0])),
        "mask": None,
        "is_causal": kind == "causal",
    }
    if kind == "bool":
        case["mask"] = gen.random((target_len, source_len)) > 0.4
    elif kind == "float":
        case["mask"] = np.where(gen.random((target_len, source_len)) > 0.3, gen.standard_normal(), -np.inf)
    if draw(st.booleans()) and batch:      # keys and values shared by the batch: broadcast batch dims
        case["k"], case["v"] = case["k"][(0,) * len(batch)], case["v"][(0,) * len(batch)]
    return case


@settings(max_examples=40, deadline=None)
@given(attention_case())
def test_values_and_rule_against_numpy_and_central_differences(case: dict[str, Any]) -> None:
    q, k, v, mask = case["q"], case["k"], case["v"], case["mask"]
    mask_t = None if mask is None else Tensor(mask, dtype=mask.dtype)
    scale = 1 / math.sqrt(q.shape[-1]) if case["scale"] is None else case["scale"]
    bias = attention_bias(mask_t, case["is_causal"], q.shape[-2], k.shape[-2], np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")         # no NumPy warning, fully masked rows included
        out, weights = attention(f64(q), f64(k), f64(v), mask_t, is_causal=case["is_causal"], scale=case["scale"])
    expect, expect_w = reference(q, k, v, bias, scale)
    np.testing.assert_allclose(out.data, expect, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(weights.data, expect_w, rtol=1e-10, atol=1e-12)
    assert np.all(np.isfinite(out.data))

    def fn(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        return scaled_dot_product_attention(a, b, c, mask_t, is_causal=case["is_causal"], scale=case["scale"])

    assert gradcheck(fn, (f64(q, True), f64(k, True), f64(v, True)))


def test_loops_agree_with_the_vectorized_forward() -> None:
    gen = np.random.default_rng(0)
    q, k, v = gen.standard_normal((5, 3)), gen.standard_normal((7, 3)), gen.standard_normal((7, 2))
    np.testing.assert_allclose(attention_loops(q, k, v), scaled_dot_product_attention(f64(q), f64(k), f64(v)).data)
    np.testing.assert_allclose(attention_loops(q, k, v, scale=0.3, is_causal=True),
                               scaled_dot_product_attention(f64(q), f64(k), f64(v), is_causal=True, scale=0.3).data)


def test_mask_kinds_mean_what_pytorch_says() -> None:
    keep = np.array([[True, False, True], [False, False, False]])
    bias = attention_bias(Tensor(keep), False, 2, 3, np.float32)
    assert bias is not None and bias.dtype == np.float32
    assert np.array_equal(bias, [[0, -np.inf, 0], [-np.inf, -np.inf, -np.inf]])
    causal = attention_bias(None, True, 3, 2, np.float64)
    assert causal is not None and np.array_equal(causal == 0, np.tri(3, 2, dtype=bool))
    assert attention_bias(None, False, 3, 3, np.float32) is None
    with pytest.raises(ValueError, match="is_causal"):
        attention_bias(Tensor(keep), True, 2, 3, np.float32)
    with pytest.raises(TypeError, match="bool or float"):
        attention_bias(Tensor(np.ones((2, 3), dtype=np.int32)), False, 2, 3, np.float32)
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        attention_bias(Tensor(np.ones((3, 3), dtype=bool)), False, 2, 3, np.float32)


def test_fully_masked_rows_are_zero_with_zero_gradients() -> None:
    gen = np.random.default_rng(1)
    q, k, v = (f64(gen.standard_normal((2, 3, 4)), True) for _ in range(3))
    keep = Tensor(np.array([[True, False, True], [False, False, False], [True, True, True]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, weights = attention(q, k, v, attn_mask=keep)
        out.sum().backward()
    assert np.all(out.data[:, 1] == 0) and np.all(weights.data[:, 1] == 0)
    for t in (q, k, v):
        assert t.grad is not None and np.all(np.isfinite(t.grad.data))
    assert q.grad is not None and np.all(q.grad.data[:, 1] == 0)


def test_dropout_uses_one_mask_for_forward_and_backward() -> None:
    gen = np.random.default_rng(2)
    x = f64(gen.standard_normal((2, 5, 3)), True)

    def fn(a: Tensor) -> Tensor:
        manual_seed(4)
        return scaled_dot_product_attention(a, a, a, dropout_p=0.4)

    assert gradcheck(fn, x)
    manual_seed(4)
    out, weights = attention(x, x, x, dropout_p=0.4)
    assert out.grad_fn is not None
    saved = out.grad_fn.saved
    np.testing.assert_allclose(weights.data, saved["weights"] * saved["dropout_mask"])
    assert set(np.unique(saved["dropout_mask"])) <= {0.0, 1 / 0.6}


def _gpt_like(seed: int) -> tuple[MultiheadAttention, Array]:
    gen = np.random.default_rng(seed)
    mha = MultiheadAttention(16, 4, generator=gen).eval()
    return mha, (3.0 * gen.standard_normal((2, 9, 16))).astype(np.float32)


@pytest.mark.parametrize("t", [0, 3, 7])
def test_causal_output_at_t_ignores_later_tokens(t: int) -> None:
    mha, x = _gpt_like(t)
    changed = x.copy()
    changed[:, t + 1:] = np.random.default_rng(99).standard_normal(changed[:, t + 1:].shape)
    y1 = mha(Tensor(x), Tensor(x), Tensor(x), is_causal=True, need_weights=False)[0]
    y2 = mha(Tensor(changed), Tensor(changed), Tensor(changed), is_causal=True, need_weights=False)[0]
    np.testing.assert_allclose(y1.data[:, :t + 1], y2.data[:, :t + 1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(y1.data[:, t + 1:], y2.data[:, t + 1:])
    xg = f64(x, True)
    mha(xg, xg, xg, is_causal=True, need_weights=False)[0][:, t].sum().backward()
    assert xg.grad is not None and np.all(xg.grad.data[:, t + 1:] == 0)
    assert np.all(np.abs(xg.grad.data[:, :t + 1]).sum(axis=-1) > 0)


def test_causal_weights_are_not_uniform() -> None:
    """Upstream TinyTorch's GPT fed an additive mask where a keep-mask was expected and attended uniformly."""
    mha, x = _gpt_like(5)
    _, weights = mha(Tensor(x), Tensor(x), Tensor(x), is_causal=True, average_attn_weights=False)
    assert weights is not None
    uniform = np.tril(np.ones((9, 9))) / np.arange(1, 10)[:, None]
    assert np.all(weights.data[..., np.triu_indices(9, 1)[0], np.triu_indices(9, 1)[1]] == 0)
    deviation = np.abs(weights.data - uniform).max(axis=(-2, -1))
    assert np.all(deviation > 0.1), deviation
    q = Tensor(x[:, None, :, :4])
    _, w_fn = attention(q, q, q, is_causal=True)
    assert np.abs(w_fn.data - uniform).max() > 0.1
    # the additive causal mask and the keep-mask give the same weights as is_causal, never uniform ones
    add = Tensor(np.triu(np.full((9, 9), -np.inf, dtype=np.float32), 1))
    keep = Tensor(np.tril(np.ones((9, 9), dtype=bool)))
    for mask in (add, keep):
        np.testing.assert_allclose(attention(q, q, q, attn_mask=mask)[1].data, w_fn.data, rtol=1e-6)


def test_composite_ops_give_the_same_gradients() -> None:
    gen = np.random.default_rng(3)
    q, k, v = (gen.standard_normal((2, 2, 4, 3)) for _ in range(3))
    probe = gen.standard_normal((2, 2, 4, 3))
    bias = attention_bias(None, True, 4, 4, np.float64)
    assert bias is not None
    fused = [f64(a, True) for a in (q, k, v)]
    (scaled_dot_product_attention(*fused, is_causal=True) * f64(probe)).sum().backward()
    chain = [f64(a, True) for a in (q, k, v)]
    scores = (chain[0] @ chain[1].transpose(-2, -1)) * (1 / math.sqrt(3)) + f64(bias)
    (softmax(scores, dim=-1) @ chain[2] * f64(probe)).sum().backward()
    for a, b in zip(fused, chain, strict=True):
        assert a.grad is not None and b.grad is not None
        np.testing.assert_allclose(a.grad.data, b.grad.data, rtol=1e-10, atol=1e-12)


def test_module_layout_and_errors() -> None:
    mha = MultiheadAttention(8, 2, generator=np.random.default_rng(0))
    assert list(mha.state_dict()) == ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    assert list(MultiheadAttention(8, 2, bias=False).state_dict()) == ["in_proj_weight", "out_proj.weight"]
    with pytest.raises(ValueError, match="divisible"):
        MultiheadAttention(8, 3)
    with pytest.raises(ValueError, match="batch_first"):
        MultiheadAttention(8, 2, batch_first=False)
    assert tt.nn.MultiheadAttention is MultiheadAttention
    assert tt.nn.functional.scaled_dot_product_attention is scaled_dot_product_attention


def test_module_gradients_against_central_differences() -> None:
    gen = np.random.default_rng(4)
    mha = MultiheadAttention(6, 2, generator=gen)
    assert mha.in_proj_bias is not None and mha.out_proj.bias is not None
    mha.in_proj_bias.data[...] = gen.standard_normal(18)
    for param in mha.parameters():
        param.data = param.data.astype(np.float64)
    x, mem = f64(gen.standard_normal((2, 3, 6)), True), f64(gen.standard_normal((2, 4, 6)), True)
    pad = Tensor(np.array([[False, False, True, False], [False] * 4]))
    assert gradcheck(lambda a, b: mha(a, b, b, key_padding_mask=pad)[0], (x, mem))
    for name, param in mha.named_parameters():
        mha.zero_grad()
        out = mha(x.detach(), mem.detach(), mem.detach(), key_padding_mask=pad)[0]
        probe = gen.standard_normal(out.shape)
        (out * f64(probe)).sum().backward()
        assert param.grad is not None
        analytic = param.grad.data.copy()
        numeric = np.zeros_like(analytic)
        flat = param.data.reshape(-1)
        for i in range(flat.size):
            saved = flat[i]
            flat[i] = saved + 1e-6
            up = float((mha(x.detach(), mem.detach(), mem.detach(), key_padding_mask=pad)[0].data * probe).sum())
            flat[i] = saved - 1e-6
            down = float((mha(x.detach(), mem.detach(), mem.detach(), key_padding_mask=pad)[0].data * probe).sum())
            flat[i] = saved
            numeric.reshape(-1)[i] = (up - down) / 2e-6
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7, err_msg=name)


# --------------------------------------------------------------------------- PyTorch


def test_function_against_pytorch() -> None:
    torch = pytest.importorskip("torch")
    gen = np.random.default_rng(5)
    q, k, v = gen.standard_normal((2, 3, 5, 4)), gen.standard_normal((2, 3, 6, 4)), gen.standard_normal((2, 3, 6, 2))
    g = gen.standard_normal((2, 3, 5, 2))
    keep = gen.random((5, 6)) > 0.4
    keep[1] = False                                       # one fully masked query
    additive = np.where(gen.random((2, 1, 5, 6)) > 0.3, gen.standard_normal((2, 1, 5, 6)), -np.inf)
    cases: list[dict[str, Any]] = [
        {}, {"is_causal": True}, {"scale": 0.3}, {"attn_mask": keep}, {"attn_mask": additive},
        {"is_causal": True, "scale": 1.7},
    ]
    for kwargs in cases:
        ours = [f64(a, True) for a in (q, k, v)]
        theirs = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
        mask = kwargs.get("attn_mask")
        our_kwargs = {**kwargs, "attn_mask": None if mask is None else Tensor(mask, dtype=mask.dtype)}
        their_kwargs = {**kwargs, "attn_mask": None if mask is None else torch.tensor(mask)}
        out = scaled_dot_product_attention(*ours, **our_kwargs)
        ref = torch.nn.functional.scaled_dot_product_attention(*theirs, **their_kwargs)
        (out * f64(g)).sum().backward()
        ref.backward(torch.tensor(g))
        np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=str(kwargs))
        for a, b in zip(ours, theirs, strict=True):
            assert a.grad is not None and b.grad is not None
            np.testing.assert_allclose(a.grad.data, b.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=str(kwargs))


def _copied(torch: Any, ours: MultiheadAttention) -> Any:
    theirs = torch.nn.MultiheadAttention(ours.embed_dim, ours.num_heads, bias=ours.in_proj_bias is not None,
                                         batch_first=True).double()
    theirs.load_state_dict({name: torch.tensor(value, dtype=torch.float64)
                            for name, value in ours.state_dict().items()})
    return theirs


@pytest.mark.parametrize("bias", [True, False])
def test_module_against_pytorch_with_copied_weights(bias: bool) -> None:
    torch = pytest.importorskip("torch")
    gen = np.random.default_rng(6)
    ours = MultiheadAttention(8, 2, bias=bias, generator=gen)
    if ours.in_proj_bias is not None and ours.out_proj.bias is not None:
        ours.in_proj_bias.data[...] = gen.standard_normal(24)
        ours.out_proj.bias.data[...] = gen.standard_normal(8)
    theirs = _copied(torch, ours)
    query, memory = gen.standard_normal((3, 4, 8)), gen.standard_normal((3, 5, 8))
    g = gen.standard_normal((3, 4, 8))
    pad = np.zeros((3, 5), dtype=bool)
    pad[1, 3:] = True
    blocked = gen.random((4, 5)) > 0.7
    blocked[:, 0] = False
    per_head = gen.random((6, 4, 5)) > 0.7
    per_head[..., 0] = False
    cases: list[dict[str, Any]] = [
        {}, {"key_padding_mask": pad}, {"attn_mask": blocked}, {"attn_mask": np.where(blocked, -np.inf, 0.3)},
        {"attn_mask": per_head, "key_padding_mask": pad}, {"average_attn_weights": False},
        {"key_padding_mask": np.where(pad, -np.inf, 0.0)},
    ]
    for kwargs in cases:
        xq, xm = f64(query, True), f64(memory, True)
        tq, tm = torch.tensor(query, requires_grad=True), torch.tensor(memory, requires_grad=True)
        our_kwargs = {key: Tensor(val, dtype=val.dtype) if isinstance(val, np.ndarray) else val
                      for key, val in kwargs.items()}
        their_kwargs = {key: torch.tensor(val) if isinstance(val, np.ndarray) else val for key, val in kwargs.items()}
        ours.zero_grad()
        theirs.zero_grad()
        out, weights = ours(xq, xm, xm, **our_kwargs)
        ref, ref_weights = theirs(tq, tm, tm, **their_kwargs)
        (out * f64(g)).sum().backward()
        ref.backward(torch.tensor(g))
        np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=str(kwargs))
        assert weights is not None
        np.testing.assert_allclose(weights.data, ref_weights.detach().numpy(), rtol=1e-5, atol=1e-7)
        assert xq.grad is not None and xm.grad is not None and tq.grad is not None and tm.grad is not None
        np.testing.assert_allclose(xq.grad.data, tq.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=str(kwargs))
        np.testing.assert_allclose(xm.grad.data, tm.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=str(kwargs))
        their_params = dict(theirs.named_parameters())
        for name, param in ours.named_parameters():
            assert param.grad is not None
            theirs_grad = their_params[name].grad
            assert theirs_grad is not None
            np.testing.assert_allclose(param.grad.data, theirs_grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_module_causal_hint_against_pytorch() -> None:
    torch = pytest.importorskip("torch")
    gen = np.random.default_rng(7)
    ours = MultiheadAttention(8, 4, generator=gen).eval()
    theirs = _copied(torch, ours).eval()
    x = gen.standard_normal((2, 6, 8))
    upper = ~np.tril(np.ones((6, 6), dtype=bool))
    out, _ = ours(f64(x), f64(x), f64(x), is_causal=True, need_weights=False)
    hinted, _ = ours(f64(x), f64(x), f64(x), attn_mask=Tensor(upper), is_causal=True, need_weights=False)
    xt = torch.tensor(x)
    ref, _ = theirs(xt, xt, xt, attn_mask=torch.tensor(upper), is_causal=True, need_weights=False)
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hinted.data, out.data, rtol=1e-12)
