"""tinytorch.core.dataloader: epochs, seeds, batching, datasets, IDX files and the shipped data sets."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.core.dataloader import (
    IDX_TYPES,
    DataLoader,
    Dataset,
    Subset,
    TensorDataset,
    default_collate,
    load_digits,
    load_fashion_mnist,
    random_split,
    read_idx,
)
from tinytorch.core.tensor import Tensor


def numbered(n: int, features: int = 3) -> TensorDataset:
    """Sample i is (row of features all equal to i, label i)."""
    x = np.repeat(np.arange(n, dtype=np.float32)[:, None], features, axis=1)
    return TensorDataset(Tensor(x), Tensor(np.arange(n)))


def epoch_labels(loader: DataLoader) -> list[list[int]]:
    return [[int(v) for v in labels.data] for _, labels in loader]


class Squares(Dataset):
    """A plain map-style dataset (the general, item-by-item path)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if not 0 <= index < self.n:
            raise IndexError(index)
        return Tensor([float(index), float(index) ** 2]), index


# --------------------------------------------------------------------------- epochs and order


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 60), st.integers(1, 70), st.booleans(), st.booleans(), st.integers(0, 2**32 - 1))
def test_every_sample_once_per_epoch_and_len(
    n: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int
) -> None:
    loader = DataLoader(
        numbered(n), batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=np.random.default_rng(seed)
    )
    expected_len = n // batch_size if drop_last else math.ceil(n / batch_size)
    assert len(loader) == expected_len
    batches = list(loader)
    assert len(batches) == expected_len
    sizes = [len(labels) for _, labels in batches]
    assert all(size == batch_size for size in sizes[:-1])
    if drop_last:
        assert all(size == batch_size for size in sizes)
    elif batches:
        assert sizes[-1] == n - batch_size * (expected_len - 1), "the last batch holds the remainder"
    seen = [label for batch in epoch_labels(loader) for label in batch]
    if drop_last:
        assert len(seen) == expected_len * batch_size and len(set(seen)) == len(seen)
    else:
        assert sorted(seen) == list(range(n)), "every sample exactly once"
    if not shuffle:
        assert seen == list(range(len(seen)))
    for xs, labels in batches:
        np.testing.assert_array_equal(xs.data[:, 0], labels.data)  # features stay with their labels


def test_order_is_reproducible_from_a_seed_and_differs_across_epochs() -> None:
    def epochs(seed: int) -> list[list[int]]:
        loader = DataLoader(numbered(50), batch_size=50, shuffle=True, generator=np.random.default_rng(seed))
        return [epoch_labels(loader)[0] for _ in range(3)]

    first, again, other = epochs(123), epochs(123), epochs(124)
    assert first == again, "the same seed gives the same epochs"
    assert first[0] != first[1] and first[1] != first[2], "each epoch is a new permutation"
    assert first != other
    assert first[0] != list(range(50))
    unseeded = DataLoader(numbered(50), batch_size=50, shuffle=True)
    assert isinstance(unseeded.generator, np.random.Generator)


def test_drop_last_and_the_last_partial_batch() -> None:
    assert [len(y) for _, y in DataLoader(numbered(10), batch_size=4)] == [4, 4, 2]
    assert [len(y) for _, y in DataLoader(numbered(10), batch_size=4, drop_last=True)] == [4, 4]
    assert len(DataLoader(numbered(10), batch_size=4)) == 3
    assert len(DataLoader(numbered(10), batch_size=4, drop_last=True)) == 2
    assert len(DataLoader(numbered(3), batch_size=4, drop_last=True)) == 0
    assert list(DataLoader(numbered(3), batch_size=4, drop_last=True)) == []
    last_x, last_y = list(DataLoader(numbered(10), batch_size=4))[-1]
    assert last_x.shape == (2, 3) and last_y.data.tolist() == [8, 9]


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 40), st.integers(1, 12), st.booleans(), st.booleans(), st.integers(0, 2**32 - 1))
def test_fast_path_equals_item_by_item(n: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int) -> None:
    dataset = numbered(n)

    def loader(collate: Any) -> DataLoader:
        return DataLoader(
            dataset, batch_size, shuffle, drop_last, generator=np.random.default_rng(seed), collate_fn=collate
        )

    fast = list(loader(None))
    slow = list(loader(lambda samples: default_collate(samples)))  # not default_collate itself: the general path
    assert len(fast) == len(slow)
    for (fx, fy), (sx, sy) in zip(fast, slow, strict=True):
        assert fx.dtype == sx.dtype == np.float32 and fy.dtype == sy.dtype == np.int64
        np.testing.assert_array_equal(fx.data, sx.data)
        np.testing.assert_array_equal(fy.data, sy.data)
        assert not fx.requires_grad


def test_general_dataset_and_custom_collate() -> None:
    batches = list(DataLoader(Squares(5), batch_size=2))
    xs, ys = batches[-1]
    np.testing.assert_array_equal(xs.data, [[4.0, 16.0]])
    assert ys.dtype == np.int64 and ys.data.tolist() == [4]
    counts = list(DataLoader(Squares(5), batch_size=2, collate_fn=len))
    assert counts == [2, 2, 1]


def test_dataloader_argument_errors() -> None:
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError):
            DataLoader(numbered(4), batch_size=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        DataLoader(numbered(4), generator=np.random.RandomState(0))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        DataLoader(numbered(4), collate_fn=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        DataLoader(42)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- datasets


def test_tensor_dataset() -> None:
    x, y = Tensor(np.arange(6.0).reshape(3, 2)), Tensor([7, 8, 9])
    dataset = TensorDataset(x, y)
    assert len(dataset) == 3
    row, label = dataset[1]
    np.testing.assert_array_equal(row.data, [2.0, 3.0])
    assert label.item() == 8 and np.shares_memory(row.data, x.data)
    with pytest.raises(IndexError):
        dataset[3]
    with pytest.raises(ValueError) as info:
        TensorDataset(Tensor(np.zeros((100, 2))), Tensor(np.zeros(99)))
    assert "100" in str(info.value) and "99" in str(info.value)
    with pytest.raises(ValueError):
        TensorDataset()
    with pytest.raises(ValueError):
        TensorDataset(Tensor(1.0))
    with pytest.raises(TypeError):
        TensorDataset(np.zeros(3))  # type: ignore[arg-type]


def test_default_collate() -> None:
    xs, ys = default_collate([(Tensor([1.0, 2.0]), 0), (Tensor([3.0, 4.0]), 1)])
    np.testing.assert_array_equal(xs.data, [[1.0, 2.0], [3.0, 4.0]])
    assert ys.dtype == np.int64 and xs.dtype == np.float32
    with pytest.raises(ValueError):
        default_collate([])
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        default_collate([Tensor([1.0, 2.0]), Tensor([1.0, 2.0, 3.0])])
    with pytest.raises(TypeError):
        default_collate(["a", "b"])


def test_random_split() -> None:
    dataset = numbered(10)
    parts = random_split(dataset, [7, 3], generator=np.random.default_rng(0))
    assert [len(p) for p in parts] == [7, 3] and all(isinstance(p, Subset) for p in parts)
    labels = [int(p[i][1].item()) for p in parts for i in range(len(p))]
    assert sorted(labels) == list(range(10)), "disjoint, and every index once"
    again = random_split(dataset, [7, 3], generator=np.random.default_rng(0))
    assert [p.indices.tolist() for p in parts] == [p.indices.tolist() for p in again]
    other = random_split(dataset, [7, 3], generator=np.random.default_rng(1))
    assert [p.indices.tolist() for p in parts] != [p.indices.tolist() for p in other]
    # floor(11 * f) = 5, 3, 2; the one left over goes to the first subset (PyTorch's rule)
    fractions = random_split(numbered(11), [0.5, 0.3, 0.2], generator=np.random.default_rng(0))
    assert [len(p) for p in fractions] == [6, 3, 2]
    for bad in ([5, 4], [11, -1], [0.5, 0.4]):
        with pytest.raises(ValueError):
            random_split(dataset, bad)
    batches = list(DataLoader(parts[1], batch_size=2))
    assert [len(y) for _, y in batches] == [2, 1]


# --------------------------------------------------------------------------- IDX files


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(IDX_TYPES[code]).tobytes()


@pytest.mark.parametrize("code", sorted(IDX_TYPES))
@pytest.mark.parametrize("compressed", [False, True])
def test_read_idx_round_trip(tmp_path: Path, code: int, compressed: bool) -> None:
    native = IDX_TYPES[code].newbyteorder("=")
    rng = np.random.default_rng(code)
    if native.kind == "f":
        array = rng.normal(0, 1000, size=(3, 4, 5)).astype(native)
    else:
        info = np.iinfo(native)
        array = rng.integers(info.min, info.max, size=(3, 4, 5), endpoint=True).astype(native)
    raw = idx_bytes(array, code)
    path = tmp_path / ("data.idx.gz" if compressed else "data.idx")
    path.write_bytes(gzip.compress(raw) if compressed else raw)
    result = read_idx(path)
    assert result.dtype == native and result.dtype.isnative and result.shape == (3, 4, 5)
    np.testing.assert_array_equal(result, array)
    assert result.flags.writeable
    vector = tmp_path / "vector"  # 1-D, and gzip detected from the content, not the name
    vector.write_bytes(gzip.compress(idx_bytes(array[0, 0], code)))
    np.testing.assert_array_equal(read_idx(str(vector)), array[0, 0])


def test_read_idx_errors(tmp_path: Path) -> None:
    good = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4), 0x08)
    cases = {
        "truncated": (good[:-2], ["12", "10"]),  # expected 12 bytes of data, found 10
        "too_long": (good + b"\0", ["12", "13"]),
        "bad_magic": (b"\x01\x02" + good[2:], ["magic"]),
        "bad_type": (good[:2] + b"\x0a" + good[3:], ["0x0a"]),
        "zero_dims": (b"\0\0\x08\0", ["0 dimensions"]),
        "short_header": (good[:7], ["2 dimensions"]),
        "too_short": (b"\0\0", ["too short"]),
        "bad_gzip": (b"\x1f\x8b" + b"garbage", ["gzip"]),
    }
    for name, (content, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError) as info:
            read_idx(path)
        message = str(info.value)
        assert message.startswith(str(path)), f"{name}: {message}"
        for word in words:
            assert word in message, f"{name}: {word!r} not in {message!r}"
    gz = tmp_path / "truncated.gz"
    gz.write_bytes(gzip.compress(good[:-2]))
    with pytest.raises(ValueError, match="found 10"):
        read_idx(gz)
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing")


def test_load_fashion_mnist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist(root=tmp_path)
    message = str(info.value)
    assert "train-images-idx3-ubyte" in message and str(tmp_path) in message
    assert "dataset-fashion-mnist" in message and "root=" in message
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28)).astype(np.uint8)
    labels = np.array([0, 9, 3, 3, 1], dtype=np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images, 0x08)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels, 0x08))
    x, y = load_fashion_mnist(root=tmp_path, train=False)
    assert x.dtype == np.float32 and x.shape == (5, 28, 28) and y.dtype == np.int64 and y.shape == (5,)
    np.testing.assert_allclose(x.data, images / 255.0, rtol=1e-6)
    assert x.data.min() >= 0 and x.data.max() <= 1
    np.testing.assert_array_equal(y.data, labels)
    with pytest.raises(FileNotFoundError, match="train-images"):
        load_fashion_mnist(root=tmp_path, train=True)


def test_load_digits() -> None:
    images, labels = load_digits()
    assert images.shape == (1797, 64) and images.dtype == np.float32
    assert labels.shape == (1797,) and labels.dtype == np.int64
    assert images.data.min() == 0 and images.data.max() == 16
    assert np.array_equal(images.data, np.round(images.data)), "pixel values are whole numbers 0..16"
    assert sorted(set(labels.data.tolist())) == list(range(10))
    counts = np.bincount(labels.data)
    assert counts.min() > 150, "roughly 180 images of each digit"
    dataset = TensorDataset(images, labels)
    xs, ys = next(iter(DataLoader(dataset, batch_size=64, shuffle=True, generator=np.random.default_rng(0))))
    assert xs.shape == (64, 64) and ys.shape == (64,)


def test_load_digits_from_a_path_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "small.npz"
    np.savez(good, images=np.arange(128, dtype=np.uint8).reshape(2, 64) % 17, labels=np.array([3, 4]))
    images, labels = load_digits(good)
    assert images.shape == (2, 64) and images.dtype == np.float32 and labels.data.tolist() == [3, 4]
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((2, 64)))
    with pytest.raises(ValueError, match="labels"):
        load_digits(bad)
    mismatch = tmp_path / "mismatch.npz"
    np.savez(mismatch, images=np.zeros((2, 64)), labels=np.zeros(3))
    with pytest.raises(ValueError):
        load_digits(mismatch)
    with pytest.raises(FileNotFoundError):
        load_digits(tmp_path / "missing.npz")
