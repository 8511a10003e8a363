"""Module 18: the KV cache gives the uncached model's logits (1e-5) at every position, prompt included, and
the same tokens as module 13's ``generate`` (greedy and sampled); the prompt is cached, each token sees
itself, every layer caches its own projections, positions continue from the cache length, and nothing of
``GPT`` is replaced at run time (upstream TinyTorch's four bugs)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Linear, Module
from tinytorch.core.tensor import Tensor, manual_seed
from tinytorch.models.transformer import GPT, MLP, CausalSelfAttention, LayerNorm, TransformerBlock

CLASSES = (GPT, TransformerBlock, CausalSelfAttention, MLP, LayerNorm, Linear, Module)
BEFORE = {cls: dict(vars(cls)) for cls in CLASSES}  # taken before the module under test is imported

from tinytorch.perf.memoization import (  # noqa: E402  (after the snapshot on purpose)
    KVCache,
    cache_causal_mask,
    forward_cached,
    generate_cached,
    gpt_blocks,
    kv_cache_bytes,
)


def random_gpt(seed: int = 0, **overrides: int) -> GPT:
    """Weights redrawn from N(0, 0.5²) so that logits are far apart: greedy decoding has no near-ties."""
    cfg = {"vocab_size": 13, "block_size": 16, "n_layer": 3, "n_head": 2, "n_embd": 16} | overrides
    model = GPT(**cfg, generator=np.random.default_rng(seed))
    gen = np.random.default_rng(seed + 1)
    for param in model.parameters():
        param.data[...] = gen.normal(0.0, 0.5, size=param.shape)
    return model.eval()


def uncached_logits(model: GPT, tokens: np.ndarray) -> np.ndarray:
    with no_grad():
        logits, _ = model(Tensor(tokens))
    data: np.ndarray = logits.data
    return data


@settings(max_examples=25, deadline=None)
@given(
    prompt_len=st.integers(2, 8),
    chunks=st.lists(st.integers(1, 3), min_size=1, max_size=4),
    batch=st.integers(1, 2),
    seed=st.integers(0, 2**16),
)
def test_cached_logits_equal_uncached_at_every_position(prompt_len: int, chunks: list[int], batch: int,
                                                        seed: int) -> None:
    model = random_gpt(seed % 7, block_size=24)
    total = prompt_len + sum(chunks)
    tokens = np.random.default_rng(seed).integers(0, 13, size=(batch, total))
    expected = uncached_logits(model, tokens)
    cache = KVCache.for_model(model, batch)
    got = [forward_cached(model, Tensor(tokens[:, :prompt_len]), cache).data]  # a multi-token prefill
    start = prompt_len
    for size in chunks:
        assert cache.length == start
        got.append(forward_cached(model, Tensor(tokens[:, start:start + size]), cache).data)
        start += size
    np.testing.assert_allclose(np.concatenate(got, axis=1), expected, atol=1e-5)  # the prompt's last one included


def test_each_decoding_step_matches_the_uncached_model() -> None:
    model = random_gpt(1)
    tokens = np.random.default_rng(0).integers(0, 13, size=(2, 16))
    expected = uncached_logits(model, tokens)
    cache = KVCache.for_model(model, 2)
    prefill = forward_cached(model, Tensor(tokens[:, :5]), cache)
    np.testing.assert_allclose(prefill.data, expected[:, :5], atol=1e-5)
    for position in range(5, 16):
        step = forward_cached(model, Tensor(tokens[:, position:position + 1]), cache)
        np.testing.assert_allclose(step.data[:, 0], expected[:, position], atol=1e-5)
    assert cache.length == 16


def test_the_prompt_is_cached_and_every_layer_holds_its_own_projections() -> None:
    model = random_gpt(2)
    tokens = np.random.default_rng(1).integers(0, 13, size=(1, 7))
    cache = KVCache.for_model(model, 1)
    forward_cached(model, Tensor(tokens), cache)
    assert cache.length == 7
    with no_grad():
        x = model.wte(Tensor(tokens)) + model.wpe(Tensor(np.arange(7)))
        for i, block in enumerate(gpt_blocks(model)):
            qkv = block.attn.c_attn(block.ln_1(x)).data.reshape(1, 7, 3, 2, 8).transpose(2, 0, 3, 1, 4)
            np.testing.assert_allclose(cache.keys[i][:, :, :7], qkv[1], atol=1e-5)
            np.testing.assert_allclose(cache.values[i][:, :, :7], qkv[2], atol=1e-5)
            x = block(x)
    assert not np.allclose(cache.keys[0][:, :, :7], cache.keys[2][:, :, :7], atol=1e-2)
    assert not cache.keys[0][:, :, 7:].any(), "nothing written past the positions fed"


def test_a_token_attends_to_itself() -> None:
    mask = cache_causal_mask(1, 5)
    assert mask.shape == (1, 6) and mask.all()
    model = random_gpt(3)
    first = forward_cached(model, Tensor(np.array([[4]])), KVCache.for_model(model, 1))
    np.testing.assert_allclose(first.data, uncached_logits(model, np.array([[4]])), atol=1e-5)
    assert np.isfinite(first.data).all()


def test_positions_continue_from_the_cache_length() -> None:
    model = random_gpt(4)
    tokens = np.array([[3, 3, 3, 3, 3, 3]])
    cache = KVCache.for_model(model, 1)
    forward_cached(model, Tensor(tokens[:, :5]), cache)
    step = forward_cached(model, Tensor(tokens[:, 5:]), cache)
    np.testing.assert_allclose(step.data[:, 0], uncached_logits(model, tokens)[:, 5], atol=1e-5)
    at_zero = forward_cached(model, Tensor(tokens[:, :1]), KVCache.for_model(model, 1))
    assert not np.allclose(step.data, at_zero.data, atol=1e-3), "the same token at position 5 is not at position 0"


def test_same_tokens_as_generate_greedy_sampled_and_with_the_default_generator() -> None:
    model = random_gpt(5, block_size=40)
    prompt = Tensor(np.random.default_rng(2).integers(0, 13, size=(3, 6)))
    greedy = generate_cached(model, prompt, 30, top_k=1)
    assert greedy.dtype == np.int64 and greedy.shape == (3, 36) and not greedy.requires_grad
    np.testing.assert_array_equal(greedy.data, model.generate(prompt, 30, top_k=1).data)
    for temperature, top_k in ((1.0, None), (0.8, 5), (2.0, 20)):
        ours = generate_cached(model, prompt, 25, temperature, top_k, generator=np.random.default_rng(9))
        theirs = model.generate(prompt, 25, temperature, top_k, generator=np.random.default_rng(9))
        np.testing.assert_array_equal(ours.data, theirs.data)
    manual_seed(11)
    ours = generate_cached(model, prompt, 10, temperature=1.3)
    manual_seed(11)
    np.testing.assert_array_equal(ours.data, model.generate(prompt, 10, temperature=1.3).data)


def test_past_block_size_the_tokens_stay_those_of_generate() -> None:
    model = random_gpt(6, block_size=8)
    for prompt_len, steps in ((3, 12), (8, 4), (11, 5), (4, 5)):
        prompt = Tensor(np.random.default_rng(prompt_len).integers(0, 13, size=(2, prompt_len)))
        ours = generate_cached(model, prompt, steps, temperature=0.9, generator=np.random.default_rng(0))
        theirs = model.generate(prompt, steps, temperature=0.9, generator=np.random.default_rng(0))
        np.testing.assert_array_equal(ours.data, theirs.data)


def test_no_method_of_gpt_or_its_parts_is_replaced() -> None:
    model = random_gpt(7)
    generate_cached(model, Tensor(np.array([[1, 2, 3]])), 5)
    forward_cached(model, Tensor(np.array([[1]])), KVCache.for_model(model, 1))
    for cls in CLASSES:
        assert dict(vars(cls)) == BEFORE[cls], f"{cls.__name__}'s methods changed"
    for _, module in model.named_modules():
        assert not {"forward", "generate", "__call__"} & set(vars(module)), type(module).__name__
    assert GPT.forward.__module__ == "tinytorch.models.transformer"


def test_cache_length_and_shape_errors_leave_the_cache_unchanged() -> None:
    model = random_gpt(8, block_size=6)
    cache = KVCache.for_model(model, 1)
    forward_cached(model, Tensor(np.zeros((1, 5), dtype=np.int64)), cache)
    with pytest.raises(ValueError, match="block_size"):
        forward_cached(model, Tensor(np.zeros((1, 2), dtype=np.int64)), cache)
    assert cache.length == 5
    with pytest.raises(ValueError, match="block_size"):
        forward_cached(model, Tensor(np.zeros((1, 7), dtype=np.int64)), KVCache(3, 1, 2, 50, 8))
    with pytest.raises(ValueError):
        forward_cached(model, Tensor(np.zeros((2, 1), dtype=np.int64)), KVCache.for_model(model, 1))
    with pytest.raises(TypeError):
        forward_cached(model, Tensor(np.zeros((1, 1), dtype=np.float32)), KVCache.for_model(model, 1))
    small = KVCache(1, 1, 1, 4, 2)
    with pytest.raises(ValueError, match="max_len"):
        small.update(0, np.zeros((1, 1, 5, 2), np.float32), np.zeros((1, 1, 5, 2), np.float32))
    with pytest.raises(ValueError):
        small.advance(5)
    for kwargs in ({"temperature": 0.0}, {"top_k": 0}, {"max_new_tokens": -1}):
        with pytest.raises(ValueError):
            generate_cached(model, Tensor(np.array([[1]])), **({"max_new_tokens": 1} | kwargs))


def test_cache_memory_formula_and_measured() -> None:
    model = GPT(65, 256, 4, 4, 128, generator=np.random.default_rng(0))
    cache = KVCache.for_model(model, 2)
    assert cache.nbytes == kv_cache_bytes(model, 2, 256) == 2 * 4 * 2 * 256 * 128 * 4
    assert sum(a.nbytes for a in (*cache.keys, *cache.values)) == cache.nbytes
    assert kv_cache_bytes(model, 1, 10, np.float16) == 2 * 4 * 10 * 128 * 2
    half = KVCache.for_model(model, 1, dtype=np.float16)
    assert half.nbytes == kv_cache_bytes(model, 1, 256, np.float16)


def test_same_logits_as_pytorch_for_the_same_weights() -> None:
    torch = pytest.importorskip("torch")
    from course.bench_gpt import torch_gpt

    model = random_gpt(9, n_layer=2, n_head=4)
    theirs = torch_gpt(13, 16, 2, 4, 16)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()}, strict=False)
    tokens = np.random.default_rng(3).integers(0, 13, size=(2, 12))
    with torch.no_grad():
        expected = theirs(torch.from_numpy(tokens))[0].numpy()
    cache = KVCache.for_model(model, 2)
    got = [forward_cached(model, Tensor(tokens[:, :4]), cache).data]
    got += [forward_cached(model, Tensor(tokens[:, i:i + 1]), cache).data for i in range(4, 12)]
    np.testing.assert_allclose(np.concatenate(got, axis=1), expected, atol=1e-4)


def test_the_four_layer_model_gives_the_same_tokens() -> None:
    model = GPT(65, 256, 4, 4, 128, generator=np.random.default_rng(0)).eval()
    prompt = Tensor(np.random.default_rng(1).integers(0, 65, size=(1, 16)))
    np.testing.assert_array_equal(generate_cached(model, prompt, 24, top_k=1).data,
                                  model.generate(prompt, 24, top_k=1).data)
