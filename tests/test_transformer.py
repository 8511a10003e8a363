"""Module 13: layer_norm's rule against central differences and PyTorch, and the GPT (shapes, loss at
initialization, causality, weight tying, PyTorch's logits for the same weights, overfitting, generation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinytorch as tt
from tinytorch.core.autograd import RULES, gradcheck, saved_reads
from tinytorch.core.layers import Parameter
from tinytorch.core.optimizers import AdamW
from tinytorch.core.tensor import Tensor, manual_seed
from tinytorch.models.transformer import (
    GPT,
    LAYER_NORM,
    MLP,
    CausalSelfAttention,
    LayerNorm,
    TransformerBlock,
    gpt_num_params,
    layer_norm,
    layer_norm_backward,
    training_flops_per_token,
)


def small_gpt(seed: int = 0, **overrides: int) -> GPT:
    cfg = {"vocab_size": 13, "block_size": 8, "n_layer": 2, "n_head": 2, "n_embd": 16} | overrides
    return GPT(**cfg, generator=np.random.default_rng(seed))  # type: ignore[arg-type]


def test_the_rule_is_registered_and_reads_only_what_the_op_saves() -> None:
    assert RULES[LAYER_NORM] is layer_norm_backward
    assert saved_reads(layer_norm_backward) == {"normalized", "rstd", "axes", "has_weight", "has_bias"}


@settings(max_examples=30, deadline=None)
@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    normalized=st.lists(st.integers(1, 4), min_size=1, max_size=2),
    affine=st.sampled_from([(False, False), (True, True), (True, False), (False, True)]),
    seed=st.integers(0, 2**16),
)
def test_rule_against_central_differences(
    lead: list[int], normalized: list[int], affine: tuple[bool, bool], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    shape = (*lead, *normalized)
    if int(np.prod(normalized)) == 1:
        return  # one element: x̂ is 0 whatever x is, and the variance's derivative is singular at 0 + eps
    x = Tensor(rng.normal(size=shape), dtype=np.float64, requires_grad=True)
    w = Tensor(rng.normal(size=normalized), dtype=np.float64, requires_grad=True) if affine[0] else None
    b = Tensor(rng.normal(size=normalized), dtype=np.float64, requires_grad=True) if affine[1] else None
    probe = Tensor(rng.normal(size=shape), dtype=np.float64)
    inputs = [t for t in (x, w, b) if t is not None]

    def fn(*ts: Tensor) -> Tensor:
        it = iter(ts[1:])
        weight = next(it) if w is not None else None
        bias = next(it) if b is not None else None
        return (layer_norm(ts[0], tuple(normalized), weight, bias, eps=1e-3) * probe).sum()

    assert gradcheck(fn, inputs, atol=1e-5, rtol=1e-3)


def test_against_pytorch_values_and_gradients() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for shape, normalized in (((4, 6), (6,)), ((2, 3, 4, 5), (4, 5)), ((3, 64, 128), (128,))):
        xa, wa, ba = rng.normal(2.0, 3.0, size=shape), rng.normal(size=normalized), rng.normal(size=normalized)
        ga = rng.normal(size=shape)
        x, w, b = (Tensor(a, requires_grad=True) for a in (xa, wa, ba))
        (layer_norm(x, normalized, w, b) * Tensor(ga)).sum().backward()
        tx, tw, tb = (torch.tensor(a, dtype=torch.float32, requires_grad=True) for a in (xa, wa, ba))
        tg = torch.tensor(ga, dtype=torch.float32)
        (torch.nn.functional.layer_norm(tx, normalized, tw, tb) * tg).sum().backward()
        out = layer_norm(x, normalized, w, b)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out.data, torch.nn.functional.layer_norm(tx, normalized, tw, tb).detach(), atol=1e-5)
        for ours, theirs in ((x, tx), (w, tw), (b, tb)):
            assert ours.grad is not None
            np.testing.assert_allclose(ours.grad.data, theirs.grad.numpy(), rtol=1e-4, atol=1e-4)
    assert repr(LayerNorm(128)) == repr(torch.nn.LayerNorm(128))
    assert repr(LayerNorm((4, 5), eps=1e-6, elementwise_affine=False)) == repr(
        torch.nn.LayerNorm((4, 5), eps=1e-6, elementwise_affine=False)
    )


def test_errors_and_namespaces() -> None:
    with pytest.raises(ValueError, match="normalized_shape"):
        layer_norm(Tensor(np.zeros((2, 4), dtype=np.float32)), 3)
    with pytest.raises(TypeError):
        layer_norm(Tensor(np.zeros((2, 4), dtype=np.int64)), 4)
    with pytest.raises(ValueError):
        CausalSelfAttention(10, 3)
    assert tt.nn.LayerNorm is LayerNorm and tt.nn.functional.layer_norm is layer_norm


def test_blocks_keep_shapes_and_are_causal() -> None:
    rng = np.random.default_rng(1)
    x = Tensor(rng.normal(size=(2, 6, 16)))
    for module in (MLP(16), CausalSelfAttention(16, 4), TransformerBlock(16, 4)):
        y = module(x)
        assert y.shape == (2, 6, 16)
        changed = Tensor(x.data.copy())
        changed.data[:, 4:] += 1.0
        np.testing.assert_allclose(module(changed).data[:, :4], y.data[:, :4], atol=1e-5)


def test_gpt_logits_loss_at_init_and_causality() -> None:
    model = small_gpt()
    rng = np.random.default_rng(2)
    idx, targets = Tensor(rng.integers(0, 13, (4, 8))), Tensor(rng.integers(0, 13, (4, 8)))
    logits, loss = model(idx, targets)
    assert logits.shape == (4, 8, 13) and logits.dtype == np.float32
    assert loss is not None and abs(loss.item() - math.log(13)) < 0.05
    assert model(idx)[1] is None
    for t in range(8):
        changed = Tensor(idx.data.copy())
        changed.data[:, t:] = (changed.data[:, t:] + 5) % 13
        np.testing.assert_allclose(model(changed)[0].data[:, :t], logits.data[:, :t], atol=1e-5)
    with pytest.raises(ValueError, match="block_size"):
        model(Tensor(rng.integers(0, 13, (1, 9))))


def test_weight_tying_is_one_parameter_whose_gradient_adds_both_uses() -> None:
    tied, untied = small_gpt(3), small_gpt(3)
    assert tied.lm_head.weight is tied.wte.weight
    assert sum(p is tied.wte.weight for p in tied.parameters()) == 1
    assert "lm_head.weight" not in tied.state_dict()
    untied.lm_head.weight = Parameter(untied.wte.weight.data.copy())
    idx, targets = Tensor(np.array([[1, 2, 3, 4, 1]])), Tensor(np.array([[2, 3, 4, 1, 12]]))
    for model in (tied, untied):
        _, loss = model(idx, targets)
        assert loss is not None
        loss.backward()
    assert tied.wte.weight.grad is not None and untied.wte.weight.grad is not None
    assert untied.lm_head.weight.grad is not None
    np.testing.assert_allclose(
        tied.wte.weight.grad.data, untied.wte.weight.grad.data + untied.lm_head.weight.grad.data, atol=1e-6
    )


def test_parameter_count_and_flops_match_the_model() -> None:
    for cfg in ((65, 64, 4, 4, 128), (13, 8, 2, 2, 16), (50, 10, 3, 3, 30)):
        model = GPT(*cfg, generator=np.random.default_rng(0))
        v, t, n_layer, _, c = cfg
        assert gpt_num_params(v, t, n_layer, c) == model.get_num_params()
        assert gpt_num_params(v, t, n_layer, c, non_embedding=False) == sum(p.numel() for p in model.parameters())
    assert gpt_num_params(65, 64, 4, 128) == 801_664
    assert training_flops_per_token(801_664, 4, 128, 64) == 6 * 801_664 + 12 * 4 * 128 * 64


def test_same_logits_and_gradients_as_pytorch_for_the_same_weights() -> None:
    torch = pytest.importorskip("torch")
    from course.bench_gpt import torch_gpt

    ours = small_gpt(4)
    theirs = torch_gpt(13, 8, 2, 2, 16)
    result = theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()}, strict=False)
    assert result.missing_keys == ["lm_head.weight"] and not result.unexpected_keys  # tied: listed once here
    rng = np.random.default_rng(5)
    idx, targets = rng.integers(0, 13, (3, 7)), rng.integers(0, 13, (3, 7))
    logits, loss = ours(Tensor(idx), Tensor(targets))
    their_logits, their_loss = theirs(torch.from_numpy(idx), torch.from_numpy(targets))
    np.testing.assert_allclose(logits.data, their_logits.detach().numpy(), atol=1e-5)
    assert loss is not None
    loss.backward()
    their_loss.backward()
    for name, param in ours.named_parameters():
        assert param.grad is not None
        np.testing.assert_allclose(
            param.grad.data, theirs.get_parameter(name).grad.numpy(), rtol=1e-3, atol=1e-5, err_msg=name
        )


def test_overfits_a_tiny_batch_in_a_few_steps() -> None:
    model = small_gpt(6)
    idx = Tensor(np.array([[1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1]]))
    targets = Tensor(np.array([[2, 3, 4, 5, 6, 7, 8, 9], [7, 6, 5, 4, 3, 2, 1, 0]]))
    opt = AdamW(model.parameters(), lr=2e-2, weight_decay=0.0)
    losses = []
    for _ in range(40):
        _, loss = model(idx, targets)
        assert loss is not None
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 2.3 and losses[-1] < 0.1, losses[::8]


def test_generate_crops_samples_reproducibly_and_records_nothing() -> None:
    model = small_gpt(7)
    prompt = Tensor(np.array([[1, 2], [3, 4]]))
    out = model.generate(prompt, 12, generator=np.random.default_rng(0))
    assert out.shape == (2, 14) and out.dtype == np.int64 and not out.requires_grad
    np.testing.assert_array_equal(out.data[:, :2], prompt.data)
    np.testing.assert_array_equal(out.data, model.generate(prompt, 12, generator=np.random.default_rng(0)).data)
    manual_seed(3)
    first = model.generate(prompt, 5)
    manual_seed(3)
    np.testing.assert_array_equal(first.data, model.generate(prompt, 5).data)
    greedy = model.generate(prompt, 10, top_k=1).data
    tokens = prompt.data.copy()
    for _ in range(10):
        tokens = np.concatenate([tokens, model(Tensor(tokens[:, -8:]))[0].data[:, -1].argmax(-1)[:, None]], axis=1)
    np.testing.assert_array_equal(greedy, tokens)
    # sampling follows the softmax: the empirical frequencies of the first sampled token match it
    draws = model.generate(Tensor(np.ones((4000, 1), dtype=np.int64)), 1, generator=np.random.default_rng(1)).data
    probs = np.exp(model(Tensor(np.array([[1]])))[0].data[0, -1].astype(np.float64))
    probs /= probs.sum()
    freq = np.bincount(draws[:, 1], minlength=13) / 4000
    assert np.abs(freq - probs).max() < 0.03
    for bad in ({"temperature": 0.0}, {"top_k": 0}):
        with pytest.raises(ValueError):
            model.generate(prompt, 1, **bad)  # type: ignore[arg-type]
