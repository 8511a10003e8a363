"""`course bench kv` runs, prints every length, the speed-up and the same-tokens check (speed is never asserted)."""

from __future__ import annotations

from course.bench_kv import KVConfig, bench_kv


def test_bench_kv_prints_every_measurement() -> None:
    table = bench_kv(threads=1, rounds=1, config=KVConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2,
                                                          n_embd=16, prompt_len=3, lengths=(2, 5)))
    rows = [line.split() for line in table.splitlines()[2:4]]
    assert [row[0] for row in rows] == ["2", "5"] and all(row[-1] == "True" for row in rows), table
    assert "speed-up" in table and "KV cache for one sequence of 16: 2,048 bytes" in table, table
    assert "threads: NumPy BLAS" in table, table


def test_the_default_is_the_issues_configuration() -> None:
    config = KVConfig()
    assert (config.vocab_size, config.block_size, config.n_layer, config.n_head, config.n_embd) == (65, 256, 4, 4, 128)
    assert config.lengths[-1] == 128 and config.prompt_len + config.lengths[-1] <= config.block_size
