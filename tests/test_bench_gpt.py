"""`course bench gpt` runs and prints the step times, the ratio and the threads (speed is never asserted)."""

from __future__ import annotations

import importlib.util

from course.bench_gpt import GPTConfig, bench_gpt


def test_bench_gpt_prints_every_measurement() -> None:
    table = bench_gpt(threads=1, rounds=1, config=GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2,
                                                            n_embd=16, batch_size=2))
    assert "GPT training step tinytorch" in table and "threads: NumPy BLAS" in table
    if importlib.util.find_spec("torch") is not None:
        assert "GPT training step PyTorch" in table and "tinytorch / PyTorch:" in table and "PyTorch 1 thread" in table


def test_the_default_is_the_milestone_configuration() -> None:
    assert GPTConfig() == GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, batch_size=12)
