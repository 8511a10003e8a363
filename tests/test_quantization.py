"""Module 15: int8 / int4 storage, error bounds, calibration, float32 exactness, module swapping, sizes, PyTorch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinytorch as tt
from tinytorch.core.autograd import gradcheck
from tinytorch.core.convolutions import Conv2d, Flatten, MaxPool2d
from tinytorch.core.dataloader import load_digits
from tinytorch.core.layers import Linear, Module, ReLU, Sequential
from tinytorch.core.losses import cross_entropy
from tinytorch.core.optimizers import Adam
from tinytorch.core.tensor import Tensor
from tinytorch.perf.quantization import (
    EPS,
    FLOAT32_EXACT,
    MinMaxObserver,
    PercentileObserver,
    QuantizedConv2d,
    QuantizedLinear,
    compute_qparams,
    dequantize,
    dequantize_weight,
    int8_matmul,
    model_size_bytes,
    pack_int4,
    qrange,
    quantize,
    quantize_affine,
    quantize_model,
    quantize_symmetric,
    quantize_weight,
    unpack_int4,
)

FLOATS = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6),
    elements=st.floats(-1e3, 1e3, width=32, allow_nan=False, allow_infinity=False),
)


def lenet(seed: int) -> Sequential:
    """The CNN of milestone 1998 (LeNet-5 on 28 x 28 images)."""
    gen = np.random.default_rng(seed)
    return Sequential(Conv2d(1, 6, 5, padding=2, generator=gen), ReLU(), MaxPool2d(2),
                      Conv2d(6, 16, 5, generator=gen), ReLU(), MaxPool2d(2), Flatten(),
                      Linear(400, 120, generator=gen), ReLU(), Linear(120, 84, generator=gen), ReLU(),
                      Linear(84, 10, generator=gen))


def weight_bytes(model: Module) -> int:
    total = 0
    for module in model.modules():
        if isinstance(module, QuantizedLinear | QuantizedConv2d):
            total += module.qweight.nbytes + module.scale.nbytes
            total += 0 if module.zero_point is None else module.zero_point.nbytes
        elif isinstance(module, Linear | Conv2d):
            total += module.weight.data.nbytes
    return total


# --------------------------------------------------------------------------- storage is really int8 / int4


def test_stored_weights_are_int8_arrays_not_floats() -> None:
    model = quantize_model(lenet(0))
    layers = [m for m in model.modules() if isinstance(m, QuantizedLinear | QuantizedConv2d)]
    assert len(layers) == 5
    for layer in layers:
        assert isinstance(layer.qweight, np.ndarray) and layer.qweight.dtype == np.int8
        assert layer.qweight.itemsize == 1 and layer.scale.dtype == np.float32
        assert list(layer.parameters()) == []
    assert not any(isinstance(m, Linear | Conv2d) for m in model.modules())
    four = quantize_model(lenet(0), bits=4)
    for layer in four.modules():
        if isinstance(layer, QuantizedLinear | QuantizedConv2d):
            assert layer.qweight.dtype == np.uint8 and layer.qweight.ndim == 1


def test_size_ratio_on_a_real_model() -> None:
    float_model = lenet(0)
    base_total, base_weights = model_size_bytes(float_model), weight_bytes(float_model)
    assert base_total == sum(p.data.nbytes for p in float_model.parameters())
    per_channel = quantize_model(float_model)
    per_tensor = quantize_model(float_model, per_channel=False)
    assert base_weights / weight_bytes(per_channel) >= 3.9       # the weights: int8 codes + scales
    assert base_total / model_size_bytes(per_tensor) >= 3.9      # the whole model, float biases included
    assert base_total / model_size_bytes(per_channel) >= 3.89    # 3.896: 4-byte scale per channel, float biases
    assert base_weights / weight_bytes(quantize_model(float_model, bits=4, per_channel=False)) >= 7.9
    assert model_size_bytes(float_model) == base_total           # the original is untouched


def test_model_size_counts_shared_arrays_once_and_buffers() -> None:
    from tinytorch.models.transformer import GPT

    gpt = GPT(vocab_size=65, block_size=16, n_layer=1, n_head=2, n_embd=16, generator=np.random.default_rng(0))
    assert gpt.lm_head.weight is gpt.wte.weight
    assert model_size_bytes(gpt) == sum(p.data.nbytes for p in gpt.parameters())
    qgpt = quantize_model(gpt)
    assert isinstance(qgpt.lm_head, QuantizedLinear) and qgpt.wte.weight is not gpt.wte.weight
    logits, _ = qgpt(Tensor(np.array([[1, 2, 3]])))
    ref, _ = gpt(Tensor(np.array([[1, 2, 3]])))
    np.testing.assert_allclose(logits.data, ref.data, atol=0.05)


# --------------------------------------------------------------------------- error bounds, properties


@settings(max_examples=40, deadline=None)
@given(FLOATS, st.sampled_from([8, 4, 3]), st.booleans())
def test_round_trip_within_half_a_step(x: np.ndarray, bits: int, symmetric: bool) -> None:
    if symmetric:
        q, scale = quantize_symmetric(x, bits)
        zp: np.ndarray = np.zeros((), dtype=np.int32)
    else:
        q, scale, zp = quantize_affine(x, bits)
    assert q.dtype == np.int8 and q.shape == x.shape
    lo, hi = qrange(bits, symmetric)
    assert q.min() >= lo and q.max() <= hi
    err = np.abs(x.astype(np.float64) - dequantize(q, scale, zp))
    assert np.all(err <= float(scale) / 2 * (1 + 1e-5) + 1e-30)
    assert dequantize(quantize(np.zeros(1), scale, zp, bits), scale, zp)[0] == 0.0  # zero is exact


@settings(max_examples=40, deadline=None)
@given(FLOATS, st.sampled_from([8, 4]))
def test_per_channel_error_never_exceeds_per_tensor(x: np.ndarray, bits: int) -> None:
    for axis in range(x.ndim):
        qt, st_ = quantize_symmetric(x, bits)
        qc, sc = quantize_symmetric(x, bits, axis=axis)
        assert np.all(sc <= st_ * (1 + 1e-6))
        reduce = tuple(d for d in range(x.ndim) if d != axis)
        e_t = np.abs(x - dequantize(qt, st_, 0)).max(axis=reduce)
        e_c = np.abs(x - dequantize(qc, sc, 0, axis=axis)).max(axis=reduce)
        assert np.all(e_c <= np.maximum(e_t, sc / 2 * (1 + 1e-5)))


@settings(max_examples=40, deadline=None)
@given(st.floats(-100, 100), st.floats(0, 100))
def test_affine_covers_asymmetric_ranges_and_zero_maps_to_an_integer(lo: float, width: float) -> None:
    hi = lo + width
    scale, zp = compute_qparams(lo, hi, symmetric=False)
    assert zp.dtype == np.int32 and -128 <= int(zp) <= 127
    grid_lo = (-128 - int(zp)) * float(scale)
    grid_hi = (127 - int(zp)) * float(scale)
    assert grid_lo <= min(lo, 0.0) + float(scale) / 2 + 1e-6 and grid_hi >= max(hi, 0.0) - float(scale) / 2 - 1e-6
    assert quantize(np.zeros(3), scale, zp)[0] == zp and dequantize(np.array([zp], dtype=np.int8), scale, zp)[0] == 0.0
    sym_scale, _ = compute_qparams(lo, hi, symmetric=True)
    if lo >= 0 and width > 1e-3:
        assert scale < sym_scale  # an all-positive range gets a finer affine step


def test_qparams_edge_cases() -> None:
    scale, zp = compute_qparams(0.0, 0.0)
    assert scale == np.float32(EPS) and zp == 0
    with pytest.raises(ValueError, match="min_val"):
        compute_qparams(1.0, -1.0)
    with pytest.raises(ValueError, match="bits"):
        qrange(9)
    with pytest.raises(ValueError, match="channels"):
        quantize(np.zeros((2, 3)), np.ones(3), 0, axis=0)
    with pytest.raises(ValueError, match="positive"):
        quantize(np.zeros(2), 0.0, 0)


# --------------------------------------------------------------------------- calibration


def test_observers_min_max_and_percentile() -> None:
    gen = np.random.default_rng(0)
    data = np.concatenate([gen.normal(0, 1, 50_000), [100.0, -80.0]]).astype(np.float32)
    mm, pct = MinMaxObserver(), PercentileObserver(99.9)
    for chunk in np.split(data[:-2], 5):
        mm(chunk)
        pct(chunk)
    mm(data[-2:])
    assert mm.max_val == 100.0 and mm.min_val == -80.0
    assert pct.batches == 5 and pct.max_val is not None and 2.5 < float(pct.max_val) < 4.0
    s_mm, z_mm = mm.calculate_qparams(symmetric=False)
    s_p, z_p = pct.calculate_qparams(symmetric=False)
    bulk = data[np.abs(data) < 2]
    err_mm = np.abs(bulk - dequantize(quantize(bulk, s_mm, z_mm), s_mm, z_mm)).mean()
    err_p = np.abs(bulk - dequantize(quantize(bulk, s_p, z_p), s_p, z_p)).mean()
    assert err_p < err_mm / 10
    per = MinMaxObserver(axis=1)
    per(np.array([[1.0, -2.0], [3.0, 0.5]]))
    assert per.min_val is not None and np.array_equal(per.min_val, [1.0, -2.0])
    assert tt.ao.quantization.MinMaxObserver is MinMaxObserver


# --------------------------------------------------------------------------- the arithmetic


def test_int8_matmul_wraps_in_numpy_and_float32_is_exact_up_to_2_pow_24() -> None:
    a = np.array([[100, 100]], dtype=np.int8)
    assert (a @ a.T).dtype == np.int8 and (a @ a.T).item() == 20000 % 256 - 256 * (20000 % 256 >= 128)
    assert FLOAT32_EXACT // (128 * 127) == 1032 and FLOAT32_EXACT // (128 * 128) == 1024
    gen = np.random.default_rng(0)
    # k = 1032 with the worst case of int8 activations (-128) times symmetric int8 weights (+-127): exact
    acts = gen.choice(np.array([-128, 127], dtype=np.int8), size=(8, 1032))
    acts[0] = -128
    weights = gen.choice(np.array([-127, 127], dtype=np.int8), size=(1032, 8))
    weights[:, 0] = -127
    exact = acts.astype(np.int64) @ weights.astype(np.int64)
    assert exact[0, 0] == 1032 * 128 * 127 <= FLOAT32_EXACT
    np.testing.assert_array_equal((acts.astype(np.float32) @ weights.astype(np.float32)).astype(np.int64), exact)
    # a counterexample above 2**24: 1041 * 127 * 127 = 16,790,289 is odd, no float32 holds it
    row = np.full((1, 1041), 127, dtype=np.int8)
    exact_odd = (row.astype(np.int64) @ row.T.astype(np.int64)).item()
    assert exact_odd > FLOAT32_EXACT and exact_odd % 2 == 1
    assert (row.astype(np.float32) @ row.T.astype(np.float32)).item() != exact_odd
    assert int8_matmul(row, row.T.copy()).item() == exact_odd


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 4), st.integers(1, 3000), st.integers(1, 4), st.integers(0, 2**16), st.booleans())
def test_int8_matmul_is_exact(m: int, k: int, n: int, seed: int, extreme: bool) -> None:
    gen = np.random.default_rng(seed)
    if extreme:
        a = gen.choice(np.array([-128, 127], dtype=np.int8), size=(m, k))
        b = gen.choice(np.array([-128, 127], dtype=np.int8), size=(k, n))
    else:
        a = gen.integers(-128, 128, size=(m, k)).astype(np.int8)
        b = gen.integers(-128, 128, size=(k, n)).astype(np.int8)
    got = int8_matmul(a, b)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, a.astype(np.int64) @ b.astype(np.int64))


# --------------------------------------------------------------------------- int4


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.int8, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=7),
                  elements=st.integers(-8, 7)))
def test_int4_packing_round_trip_is_exact(codes: np.ndarray) -> None:
    packed = pack_int4(codes)
    assert packed.dtype == np.uint8 and packed.shape == ((codes.size + 1) // 2,)
    np.testing.assert_array_equal(unpack_int4(packed, codes.shape), codes)
    low = packed & 0x0F
    np.testing.assert_array_equal(np.where(low >= 8, low.astype(np.int16) - 16, low), codes.reshape(-1)[0::2])


def test_int4_weight_layer_round_trip() -> None:
    w = np.random.default_rng(3).normal(size=(5, 7)).astype(np.float32)
    qw, scale, zp = quantize_weight(w, bits=4)
    assert qw.dtype == np.uint8 and qw.nbytes == 18 and zp is None
    q8 = quantize_symmetric(w, 4, axis=0)[0]
    np.testing.assert_array_equal(unpack_int4(qw, w.shape), q8)
    np.testing.assert_allclose(dequantize_weight(qw, scale, zp, w.shape, bits=4), dequantize(q8, scale, 0, axis=0))


# --------------------------------------------------------------------------- layers and models


def test_quantized_layers_forward_and_gradient_to_the_input() -> None:
    gen = np.random.default_rng(0)
    layer = Linear(5, 3, generator=gen)
    qlayer = QuantizedLinear.from_float(layer, symmetric=False)
    assert qlayer.zero_point is not None and qlayer.zero_point.dtype == np.int32
    x = Tensor(gen.normal(size=(4, 5)), dtype=np.float64, requires_grad=True)
    assert gradcheck(lambda t: qlayer(t).sum() * 2.0, x)
    conv = Conv2d(2, 3, 3, stride=(2, 1), padding=(1, 0), generator=gen)
    qconv = QuantizedConv2d.from_float(conv)
    xc = Tensor(gen.normal(size=(2, 2, 6, 5)).astype(np.float32))
    assert qconv(xc).shape == conv(xc).shape == (2, 3, 3, 3)
    np.testing.assert_allclose(qconv(xc).data, conv(xc).data, atol=0.05)
    assert "bits=8" in repr(qconv) and "bits=8" in repr(qlayer)


def test_quantize_model_swaps_modules_and_leaves_the_original() -> None:
    model = lenet(1)
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    quantized = quantize_model(model, bits=4, per_channel=False)
    assert [type(m).__name__ for m in quantized] == [
        "QuantizedConv2d", "ReLU", "MaxPool2d", "QuantizedConv2d", "ReLU", "MaxPool2d", "Flatten",
        "QuantizedLinear", "ReLU", "QuantizedLinear", "ReLU", "QuantizedLinear",
    ]
    assert [type(m).__name__ for m in quantized._modules.values()] == [type(m).__name__ for m in quantized]
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(before[name], p.data)
    x = Tensor(np.random.default_rng(2).normal(size=(2, 1, 28, 28)).astype(np.float32))
    assert quantized(x).shape == (2, 10)


def _digits_split() -> tuple[Tensor, Tensor, Tensor, np.ndarray]:
    images, labels = load_digits()
    order = np.random.default_rng(0).permutation(len(labels.data))
    cut = int(0.8 * len(order))
    x = (images.data / 16.0).astype(np.float32)
    return (Tensor(x[order[:cut]]), Tensor(labels.data[order[:cut]]), Tensor(x[order[cut:]]),
            labels.data[order[cut:]])


def test_digits_mlp_accuracy_after_post_training_quantization() -> None:
    x_train, y_train, x_test, y_test = _digits_split()
    model = Sequential(Linear(64, 128, generator=np.random.default_rng(1)), ReLU(),
                       Linear(128, 10, generator=np.random.default_rng(2)))
    optimizer = Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        loss = cross_entropy(model(x_train), y_train)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def accuracy(net: Module) -> float:
        return float((net(x_test).data.argmax(axis=1) == y_test).mean() * 100)

    float_acc = accuracy(model)
    assert float_acc > 95
    for per_channel in (True, False):
        assert abs(accuracy(quantize_model(model, per_channel=per_channel)) - float_acc) <= 1.0
    assert accuracy(quantize_model(model, bits=4)) >= float_acc - 3.0


# --------------------------------------------------------------------------- PyTorch


def test_against_torch_quantize_per_tensor_and_per_channel() -> None:
    torch = pytest.importorskip("torch")
    gen = np.random.default_rng(5)
    x = gen.normal(size=(16, 33)).astype(np.float32) * gen.uniform(0.01, 2, size=(16, 1)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q, scale, zp = quantize_affine(x)
        theirs = torch.quantize_per_tensor(torch.from_numpy(x), float(scale), int(zp), torch.qint8)
        np.testing.assert_array_equal(q, theirs.int_repr().numpy())
        np.testing.assert_allclose(dequantize(q, scale, zp), theirs.dequantize().numpy(), rtol=1e-6, atol=1e-7)
        qc, sc = quantize_symmetric(x, axis=0)
        theirs_c = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(sc.astype(np.float64)),
                                              torch.zeros(16, dtype=torch.int64), 0, torch.qint8)
        np.testing.assert_array_equal(qc, theirs_c.int_repr().numpy())
        # the observers' parameters: affine equal; symmetric equal when PyTorch's range is -127 .. 127
        obs = torch.ao.quantization.MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_affine)
        obs(torch.from_numpy(x))
        t_scale, t_zp = obs.calculate_qparams()
        assert np.isclose(float(t_scale), float(scale), rtol=1e-6) and int(t_zp) == int(zp)
        sym = torch.ao.quantization.MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric,
                                                   quant_min=-127, quant_max=127)
        sym(torch.from_numpy(x))
        assert np.isclose(float(sym.calculate_qparams()[0]), float(quantize_symmetric(x)[1]), rtol=1e-6)


def test_against_torch_quantize_dynamic() -> None:
    torch = pytest.importorskip("torch")
    gen = np.random.default_rng(6)
    ours = Sequential(Linear(64, 128, generator=gen), ReLU(), Linear(128, 10, generator=gen))
    theirs = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    with torch.no_grad():
        for index in (0, 2):
            layer = ours[index]
            assert isinstance(layer, Linear) and layer.bias is not None
            theirs[index].weight.copy_(torch.from_numpy(layer.weight.data))
            theirs[index].bias.copy_(torch.from_numpy(layer.bias.data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs_q = torch.ao.quantization.quantize_dynamic(theirs, {torch.nn.Linear}, dtype=torch.qint8)
    x = gen.normal(size=(32, 64)).astype(np.float32)
    ours_q = quantize_model(ours, per_channel=False)
    with torch.no_grad():
        t_out = theirs_q(torch.from_numpy(x)).numpy()
        t_w = theirs_q[0].weight().int_repr().numpy()
    first = ours_q[0]
    assert isinstance(first, QuantizedLinear)
    # the same int8 weight codes, up to PyTorch's step of max|w| / 127.5 instead of max|w| / 127
    assert np.abs(first.qweight.astype(np.int16) - t_w.astype(np.int16)).max() <= 1
    ref = ours(Tensor(x)).data
    ours_err = np.abs(ours_q(Tensor(x)).data - ref).max()
    theirs_err = np.abs(t_out - ref).max()
    assert ours_err <= theirs_err * 1.5 + 1e-3   # weight-only is at least as accurate as dynamic (int8 activations)
