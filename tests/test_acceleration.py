"""Module 17: every faster kernel against the slow one (bit for bit where the order of operations is the same,
within a stated float tolerance where it is not) and against PyTorch when installed; the tile size is used."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.core.convolutions import conv2d_loops
from tinytorch.perf.acceleration import (
    check_out,
    conv2d_sliding_window,
    cpu_cache_sizes,
    gelu_fused,
    gelu_naive,
    matmul_loops,
    matmul_shapes,
    matmul_vectorized,
    parse_cache_size,
    softmax_fused,
    softmax_naive,
    tile_for_cache,
    tiled_matmul,
)

EPS32 = float(np.finfo(np.float32).eps) / 2  # unit roundoff of float32, 2**-24


def _pair(rng: np.random.Generator, m: int, k: int, n: int) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    return rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)


def _within_rounding(got: npt.NDArray[Any], a: npt.NDArray[Any], b: npt.NDArray[Any]) -> bool:
    """|got - a @ b| <= K * u * (|a| @ |b|) + one final rounding: the classic bound for any summation order."""
    exact = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    k = a.shape[1]
    return bool(np.all(np.abs(got - exact) <= (k + 1) * EPS32 * scale + 1e-30))


@settings(max_examples=30, deadline=None)
@given(m=st.integers(0, 6), k=st.integers(0, 6), n=st.integers(0, 6), seed=st.integers(0, 2**16))
def test_loops_and_vectorized_are_the_same_bits(m: int, k: int, n: int, seed: int) -> None:
    a, b = _pair(np.random.default_rng(seed), m, k, n)
    loops = matmul_loops(a, b)
    vec = matmul_vectorized(a, b)
    assert loops.dtype == vec.dtype == np.float32 and loops.shape == (m, n)
    assert np.array_equal(loops, vec)
    assert np.array_equal(tiled_matmul(a, b, 1), loops)            # tile 1: scalar products in order p
    assert _within_rounding(loops, a, b)


@settings(max_examples=40, deadline=None)
@given(m=st.integers(0, 20), k=st.integers(0, 20), n=st.integers(0, 20), tile=st.integers(1, 25),
       seed=st.integers(0, 2**16))
def test_tiled_counts_its_block_products_and_stays_within_rounding(m: int, k: int, n: int, tile: int,
                                                                  seed: int) -> None:
    a, b = _pair(np.random.default_rng(seed), m, k, n)
    shapes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def counting(x: npt.NDArray[Any], y: npt.NDArray[Any]) -> npt.NDArray[Any]:
        shapes.append((x.shape, y.shape))
        product: npt.NDArray[Any] = np.matmul(x, y)
        return product

    got = tiled_matmul(a, b, tile, kernel=counting)
    assert got.shape == (m, n) and got.dtype == np.float32
    assert len(shapes) == math.ceil(m / tile) * math.ceil(n / tile) * math.ceil(k / tile)
    assert all(max(*x, *y) <= tile for x, y in shapes)
    assert sum(x[0] * x[1] * y[1] for x, y in shapes) == m * k * n   # every multiply-add exactly once
    assert _within_rounding(got, a, b)
    if tile >= max(m, n, k, 1):
        assert np.array_equal(got, a @ b)                           # one block: np.matmul's own bits


def test_the_tile_size_changes_the_work_not_the_answer() -> None:
    """Upstream's tiled_matmul ignored its tile: here tile 1 and tile n do n**3 and 1 block products."""
    a, b = _pair(np.random.default_rng(0), 12, 12, 12)
    counts = {}
    for tile in (1, 5, 12):
        calls = 0

        def counting(x: npt.NDArray[Any], y: npt.NDArray[Any]) -> npt.NDArray[Any]:
            nonlocal calls
            calls += 1
            product: npt.NDArray[Any] = np.matmul(x, y)
            return product

        out = tiled_matmul(a, b, tile, kernel=counting)
        counts[tile] = calls
        np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)
    assert counts == {1: 12**3, 5: 27, 12: 1}
    assert np.allclose(tiled_matmul(a, b, 4, kernel=matmul_vectorized), a @ b, atol=1e-5)


def test_matmul_errors_and_dtypes() -> None:
    for fn in (matmul_loops, matmul_vectorized, tiled_matmul):
        with pytest.raises(ValueError, match=r"\(2, 3\) and \(2, 3\)"):
            fn(np.ones((2, 3)), np.ones((2, 3)))
        with pytest.raises(TypeError):
            fn([[1.0]], np.ones((1, 1)))  # type: ignore[arg-type]
        assert fn(np.arange(6).reshape(2, 3), np.arange(6).reshape(3, 2)).tolist() == [[10, 13], [28, 40]]
        assert fn(np.ones((2, 2), np.float32), np.ones((2, 2), np.float64)).dtype == np.float64
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="tile"):
            tiled_matmul(np.ones((2, 2)), np.ones((2, 2)), bad)  # type: ignore[arg-type]
    assert matmul_shapes(np.ones((2, 3)), np.ones((3, 4))) == (2, 3, 4)


def test_against_pytorch_matmul() -> None:
    torch = pytest.importorskip("torch")
    a, b = _pair(np.random.default_rng(1), 33, 47, 29)
    ref = (torch.from_numpy(a) @ torch.from_numpy(b)).numpy()
    for got in (matmul_vectorized(a, b), tiled_matmul(a, b, 8), tiled_matmul(a, b, 100)):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 2), c_in=st.integers(1, 3), c_out=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7),
    kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3),
    ph=st.integers(0, 2), pw=st.integers(0, 2), bias=st.booleans(), seed=st.integers(0, 2**16),
)
def test_sliding_window_conv_equals_the_loops(n: int, c_in: int, c_out: int, h: int, w: int, kh: int, kw: int,
                                              sh: int, sw: int, ph: int, pw: int, bias: bool, seed: int) -> None:
    if h + 2 * ph < kh or w + 2 * pw < kw:
        with pytest.raises(ValueError, match="too small"):
            conv2d_sliding_window(np.zeros((n, c_in, h, w)), np.zeros((c_out, c_in, kh, kw)), padding=(ph, pw))
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c_in, h, w))
    weight = rng.standard_normal((c_out, c_in, kh, kw))
    b = rng.standard_normal(c_out) if bias else None
    got = conv2d_sliding_window(x, weight, b, stride=(sh, sw), padding=(ph, pw))
    ref = conv2d_loops(x, weight, b, stride=(sh, sw), padding=(ph, pw))
    assert got.shape == ref.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_sliding_window_conv_against_pytorch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 12, 10)).astype(np.float32)
    weight = rng.standard_normal((8, 3, 3, 5)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    got = conv2d_sliding_window(x, weight, b, stride=(2, 1), padding=(1, 2))
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(b),
                                     stride=(2, 1), padding=(1, 2)).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="channels"):
        conv2d_sliding_window(x, weight[:, :2])


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=3), scale=st.sampled_from([0.1, 1.0, 5.0, 50.0]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_fused_chains_are_the_naive_bits(shape: list[int], scale: float, dtype: Any, seed: int) -> None:
    x = (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)
    before = x.copy()
    g = gelu_fused(x)
    s = softmax_fused(x)
    assert g.dtype == s.dtype == dtype and g.shape == s.shape == x.shape
    assert np.array_equal(g, gelu_naive(x)) and np.array_equal(s, softmax_naive(x))
    assert np.array_equal(x, before)
    buf = np.empty_like(x)
    assert gelu_fused(x, out=buf) is buf and np.array_equal(buf, g)
    assert softmax_fused(x, out=buf) is buf and np.array_equal(buf, s)


def test_fused_chains_against_pytorch_and_module_02() -> None:
    from tinytorch.core.activations import gelu
    from tinytorch.core.tensor import Tensor

    x = np.random.default_rng(3).standard_normal((64, 33)).astype(np.float32) * 4
    np.testing.assert_allclose(gelu_fused(x), gelu(Tensor(x), approximate="tanh").data, rtol=0, atol=2e-6)
    torch = pytest.importorskip("torch")
    tx = torch.from_numpy(x)
    np.testing.assert_allclose(gelu_fused(x), torch.nn.functional.gelu(tx, approximate="tanh").numpy(),
                               rtol=1e-6, atol=2e-6)
    np.testing.assert_allclose(softmax_fused(x), torch.softmax(tx, dim=-1).numpy(), rtol=1e-6, atol=1e-7)


def test_fused_out_buffers_allocate_nothing_and_are_checked() -> None:
    import tracemalloc

    x = np.linspace(-5, 5, 1 << 18, dtype=np.float32).reshape(512, 512)
    buf = np.empty_like(x)
    for fn in (gelu_fused, softmax_fused):
        fn(x, out=buf)
        tracemalloc.start()
        fn(x, out=buf)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < x.nbytes // 16
        for bad in (np.empty((2, 2), np.float32), np.empty_like(x, dtype=np.float64), x, x[::-1]):
            with pytest.raises(ValueError, match="out"):
                fn(x, out=bad)
        with pytest.raises(TypeError, match="floating"):
            fn(np.arange(4))
    with pytest.raises(ValueError):
        softmax_fused(np.array(1.0))
    assert check_out(x, None, "t").shape == x.shape


def test_parse_cache_size() -> None:
    cases = {"32K": 32768, "1024K": 2**20, "32768K": 2**25, "32 KiB": 32768, "1 MiB": 2**20, "2G": 2**31,
             " 48kb\n": 49152, "512": 512, "0": 0}
    for text, expected in cases.items():
        assert parse_cache_size(text) == expected
    for bad in ("", "K", "1.5M", "32T", "-1K", "32 Kx", "512b"):
        with pytest.raises(ValueError, match="cannot read"):
            parse_cache_size(bad)


@given(cache=st.integers(12, 2**40), itemsize=st.sampled_from([1, 2, 4, 8]), operands=st.integers(1, 4))
def test_tile_for_cache_is_the_largest_tile_that_fits(cache: int, itemsize: int, operands: int) -> None:
    if cache < operands * itemsize:
        with pytest.raises(ValueError):
            tile_for_cache(cache, itemsize, operands)
        return
    t = tile_for_cache(cache, itemsize, operands)
    assert operands * t * t * itemsize <= cache < operands * (t + 1) ** 2 * itemsize


@pytest.mark.skipif(not Path("/sys/devices/system/cpu/cpu0/cache/index0/size").exists(), reason="no /sys caches")
def test_cpu_cache_sizes_read_sys() -> None:
    sizes = cpu_cache_sizes()
    assert "L1d" in sizes and all(isinstance(v, int) and v > 0 for v in sizes.values())
    expected = parse_cache_size(Path("/sys/devices/system/cpu/cpu0/cache/index0/size").read_text())
    assert expected in sizes.values()
