"""Module 11: the embedding op's rule against central differences and PyTorch, and the positional encodings."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinytorch as tt
from tinytorch.core.autograd import RULES, gradcheck, saved_reads
from tinytorch.core.tensor import Tensor
from tinytorch.text.embeddings import (
    EMBEDDING,
    Embedding,
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    embedding,
    embedding_backward,
    sinusoidal_encoding,
)


def test_the_rule_is_registered_and_reads_only_what_the_op_saves() -> None:
    assert RULES[EMBEDDING] is embedding_backward
    assert saved_reads(embedding_backward) == {"indices", "padding_idx"}


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 6),
    dim=st.integers(1, 4),
    id_shape=st.lists(st.integers(0, 4), min_size=0, max_size=3),
    padding=st.one_of(st.none(), st.integers(-6, 5)),
    seed=st.integers(0, 2**16),
)
def test_rule_against_central_differences(
    rows: int, dim: int, id_shape: list[int], padding: int | None, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    ids = Tensor(rng.integers(0, rows, size=tuple(id_shape)))
    if padding is not None and not -rows <= padding < rows:
        padding = None
    weight = Tensor(rng.normal(size=(rows, dim)), dtype=np.float64, requires_grad=True)
    probe = Tensor(rng.normal(size=(*id_shape, dim)), dtype=np.float64)
    if padding is None:
        assert gradcheck(lambda w: (embedding(ids, w) * probe).sum(), weight)
    weight.grad = None
    (embedding(ids, weight, padding_idx=padding) * probe).sum().backward()
    expected = np.zeros((rows, dim))
    for index, r in np.ndenumerate(ids.data):
        expected[r] += probe.data[index]
    if padding is not None:
        expected[padding % rows] = 0.0
    assert weight.grad is not None and np.allclose(weight.grad.data, expected)


def test_out_of_range_and_wrong_types() -> None:
    w = Tensor(np.zeros((3, 2), dtype=np.float32))
    for bad in ([3], [-1], [[0, 1], [2, 5]]):
        with pytest.raises(IndexError, match="out of range"):
            embedding(Tensor(np.array(bad)), w)
    with pytest.raises(TypeError, match="integer"):
        embedding(Tensor([0.0]), w)
    with pytest.raises(ValueError):
        Embedding(3, 2, padding_idx=3)


def test_namespaces_and_module() -> None:
    assert tt.nn.Embedding is Embedding and tt.nn.functional.embedding is embedding
    emb = Embedding(10, 4, padding_idx=-1, generator=np.random.default_rng(0))
    assert repr(emb) == "Embedding(10, 4, padding_idx=9)" and not emb.weight.data[9].any()
    assert list(emb.state_dict()) == ["weight"]


def test_sinusoidal_table_and_modules() -> None:
    pe = sinusoidal_encoding(64, 16)
    for pos in (0, 5, 63):
        for i in range(8):
            angle = pos / 10000 ** (2 * i / 16)
            assert math.isclose(pe[pos, 2 * i], math.sin(angle), abs_tol=1e-6)
            assert math.isclose(pe[pos, 2 * i + 1], math.cos(angle), abs_tol=1e-6)
    enc = SinusoidalPositionalEncoding(16, max_len=64)
    x = Tensor(np.zeros((2, 10, 16), dtype=np.float32))
    assert np.allclose(enc(x).data, pe[:10])
    wpe = LearnedPositionalEmbedding(12, 16, generator=np.random.default_rng(0))
    assert np.allclose(wpe(x).data, wpe.weight.data[:10])
    with pytest.raises(ValueError, match="13"):
        wpe(Tensor(np.zeros((1, 13, 16), dtype=np.float32)))


def test_against_pytorch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w = rng.normal(size=(9, 5))
    ids = rng.integers(0, 9, size=(3, 7))
    g = rng.normal(size=(3, 7, 5))
    for padding in (None, 2, -1):
        ours = Tensor(w, dtype=np.float64, requires_grad=True)
        out = embedding(Tensor(ids), ours, padding_idx=padding)
        (out * Tensor(g)).sum().backward()
        theirs = torch.tensor(w, requires_grad=True)
        ref = torch.nn.functional.embedding(torch.tensor(ids), theirs, padding_idx=padding)
        (ref * torch.tensor(g)).sum().backward()
        assert np.allclose(out.data, ref.detach().numpy())
        assert ours.grad is not None and np.allclose(ours.grad.data, theirs.grad.numpy())
    assert repr(Embedding(10, 3, padding_idx=0)) == repr(torch.nn.Embedding(10, 3, padding_idx=0))
