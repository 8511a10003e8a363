"""``course bench kv``: module 18's cached generation against module 13's ``generate``, on the same GPT.

The default is the issue's configuration: a 4-layer, 4-head, 128-wide GPT over 65 characters with a context of
256, a 16-token prompt and 128 new tokens, greedy (``top_k=1``), with NumPy's BLAS pinned to the same number of
threads for both (``threadpoolctl``). For every length the two are timed as the median of several runs, their
tokens compared, and the speed-up printed (the issue's target: at least 8x for 128 tokens), with the cache's
size by formula and measured. The model is untrained: speed does not depend on the weights' values.

Speed is measured here, never asserted in a test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from statistics import median

import numpy as np

from course.bench_training import pinned_threads
from tinytorch.core.tensor import Tensor
from tinytorch.models.transformer import GPT
from tinytorch.perf.memoization import KVCache, generate_cached, kv_cache_bytes


@dataclass(frozen=True)
class KVConfig:
    """nanoGPT's names for the model, then the prompt and the generated lengths (the last is the headline)."""

    vocab_size: int = 65
    block_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    prompt_len: int = 16
    lengths: tuple[int, ...] = (16, 32, 64, 128)


def _median_seconds(fn: object, rounds: int) -> tuple[float, Tensor]:
    assert callable(fn)
    samples, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - started)
    assert isinstance(result, Tensor)
    return median(samples), result


def bench_kv(threads: int = 1, rounds: int = 5, config: KVConfig | None = None) -> str:
    """The table: seconds and ms per token for ``generate`` and ``generate_cached`` at each length, the
    speed-up, whether the tokens are the same, and the cache's bytes."""
    config = config or KVConfig()
    model = GPT(config.vocab_size, config.block_size, config.n_layer, config.n_head, config.n_embd,
                generator=np.random.default_rng(0)).eval()
    prompt = Tensor(np.random.default_rng(1).integers(0, config.vocab_size, size=(1, config.prompt_len)))
    lines = [
        f"GPT(vocab_size={config.vocab_size}, block_size={config.block_size}, n_layer={config.n_layer}, "
        f"n_head={config.n_head}, n_embd={config.n_embd}), prompt {config.prompt_len} tokens, greedy; "
        f"median of {rounds} runs",
        f"{'new tokens':>10}{'generate s':>12}{'cached s':>10}{'ms/token':>10}{'cached ms/token':>17}"
        f"{'speed-up':>10}{'same tokens':>13}",
    ]
    with pinned_threads(threads) as note:
        generate_cached(model, prompt, 2, top_k=1)  # warm-up
        for n in config.lengths:
            uncached, theirs = _median_seconds(lambda n=n: model.generate(prompt, n, top_k=1), rounds)
            cached, ours = _median_seconds(lambda n=n: generate_cached(model, prompt, n, top_k=1), rounds)
            same = bool(np.array_equal(ours.data, theirs.data))
            lines.append(f"{n:>10}{uncached:>12.3f}{cached:>10.3f}{uncached / n * 1e3:>10.2f}"
                         f"{cached / n * 1e3:>17.2f}{uncached / cached:>9.1f}x{same!s:>13}")
    cache = KVCache.for_model(model, 1)
    lines.append(f"KV cache for one sequence of {config.block_size}: {kv_cache_bytes(model, 1, config.block_size):,} "
                 f"bytes by formula (2·n_layer·B·T·C·4), {cache.nbytes:,} measured (nbytes)")
    lines.append(f"threads: {note}")
    return "\n".join(lines)
