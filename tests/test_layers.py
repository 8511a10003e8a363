"""tinytorch.core.layers: Module registration, Linear, Dropout, Sequential, state dicts, PyTorch when installed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.core.activations import relu as relu_function
from tinytorch.core.layers import (
    GELU,
    Dropout,
    Linear,
    Module,
    Parameter,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
    _calculate_correct_fan,
    _calculate_fan_in_and_fan_out,
    calculate_gain,
    kaiming_normal_,
    kaiming_uniform_,
    normal_,
    ones_,
    uniform_,
    xavier_normal_,
    xavier_uniform_,
    zeros_,
)
from tinytorch.core.tensor import Tensor


class Block(Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = Linear(4, 3, generator=np.random.default_rng(1))
        self.body = Sequential(Linear(3, 3, generator=np.random.default_rng(2)), ReLU(), Dropout(0.5))
        self.scale = Parameter([2.0])
        self.note = "not registered"

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.body(self.fc1(x)) * self.scale
        return out


def make_model() -> Sequential:
    return Sequential(Block(), Tanh(), Sequential(Linear(3, 2, bias=False, generator=np.random.default_rng(3))))


# --------------------------------------------------------------------------- registration


def test_named_parameters_in_nested_sequentials() -> None:
    names = [name for name, _ in make_model().named_parameters()]
    # PyTorch's order: module by module (named_modules), each module's own parameters first.
    assert names == [
        "0.scale",
        "0.fc1.weight",
        "0.fc1.bias",
        "0.body.0.weight",
        "0.body.0.bias",
        "2.0.weight",
    ]
    model = make_model()
    assert [id(p) for p in model.parameters()] == [id(p) for _, p in model.named_parameters()]
    assert next(n for n, _ in model.named_parameters(prefix="net")) == "net.0.scale"
    assert [n for n, _ in model[0].named_parameters(recurse=False)] == ["scale"]
    assert [n for n, _ in model.named_modules()] == [
        "", "0", "0.fc1", "0.body", "0.body.0", "0.body.1", "0.body.2", "1", "2", "2.0"
    ], "activations are modules too"


def test_parameters_are_registered_in_assignment_order_and_only_parameters() -> None:
    block = Block()
    assert list(block._parameters) == ["scale"]
    assert list(block._modules) == ["fc1", "body"]
    assert block.note == "not registered"
    with pytest.raises(TypeError, match="scale"):
        block.scale = Tensor([1.0])  # type: ignore[assignment]
    block.scale = None  # type: ignore[assignment]
    assert "scale" not in dict(block.named_parameters())
    block.fc1 = Parameter([1.0])  # type: ignore[assignment]
    assert "fc1" in block._parameters and "fc1" not in block._modules


def test_assigning_before_init_is_an_error() -> None:
    class Early(Module):
        def __init__(self) -> None:
            self.weight = Parameter([1.0])
            super().__init__()

    with pytest.raises(AttributeError, match=r"before Module\.__init__"):
        Early()


def test_a_shared_layer_counts_once() -> None:
    shared = Linear(3, 3, generator=np.random.default_rng(0))
    model = Sequential(shared, ReLU(), shared)
    params = list(model.parameters())
    assert len(params) == 2 and params[0] is shared.weight and params[1] is shared.bias
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias"]
    assert len(list(model.modules())) == 3, "the Sequential, the shared Linear once, the ReLU"
    assert sum(p.numel() for p in model.parameters()) == 12


def test_train_and_eval_recurse() -> None:
    model = make_model()
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    assert model.train() is model
    assert all(m.training for m in model.modules())
    model.train(False)
    assert not any(m.training for m in model.modules())
    with pytest.raises(ValueError):
        model.train("yes")  # type: ignore[arg-type]


def test_forward_must_be_overridden() -> None:
    with pytest.raises(NotImplementedError, match="forward"):
        Module()(Tensor([1.0]))


def test_parameter() -> None:
    p = Parameter([1.0, 2.0])
    assert p.requires_grad and p.is_leaf and p.grad is None and p.dtype == np.float32
    assert repr(p).startswith("Parameter containing:\n")
    array = np.zeros(3, dtype=np.float32)
    assert np.shares_memory(Parameter(Tensor(array)).data, array)
    assert not Parameter([1.0], requires_grad=False).requires_grad


# --------------------------------------------------------------------------- init


def empty(*shape: int, dtype: type = np.float32) -> Tensor:
    return Tensor(np.zeros(shape, dtype=dtype))


@pytest.mark.parametrize(
    ("shape", "fans"),
    [((3, 5), (5, 3)), ((1, 1), (1, 1)), ((8, 4, 3), (12, 24)), ((16, 3, 5, 5), (75, 400)),
     ((2, 3, 2, 2, 2), (24, 16))],
)
def test_fans_are_pytorchs(shape: tuple[int, ...], fans: tuple[int, int]) -> None:
    assert _calculate_fan_in_and_fan_out(empty(*shape)) == fans
    assert _calculate_correct_fan(empty(*shape), "fan_in") == fans[0]
    assert _calculate_correct_fan(empty(*shape), "FAN_OUT") == fans[1]


def test_fans_need_two_dimensions_and_a_known_mode() -> None:
    for shape in [(), (4,)]:
        with pytest.raises(ValueError, match="fewer than 2 dimensions"):
            _calculate_fan_in_and_fan_out(empty(*shape))
    with pytest.raises(ValueError, match="fan_avg"):
        _calculate_correct_fan(empty(2, 2), "fan_avg")


def test_calculate_gain_table() -> None:
    for name in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
                 "sigmoid"):
        assert calculate_gain(name) == 1.0
    assert calculate_gain("tanh") == pytest.approx(5 / 3)
    assert calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert calculate_gain("selu") == pytest.approx(0.75)
    assert calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01**2)))
    assert calculate_gain("leaky_relu", 0) == pytest.approx(math.sqrt(2))
    assert calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(1 / math.sqrt(3))
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        calculate_gain("swish")
    for bad in (True, "0.2"):
        with pytest.raises(ValueError, match="negative_slope"):
            calculate_gain("leaky_relu", bad)  # type: ignore[arg-type]


# (function, keyword arguments, the distribution's bound for a uniform draw or std for a normal draw) for (300, 200)
FAN_IN, FAN_OUT = 200, 300
INITS = [
    (xavier_uniform_, {}, "uniform", math.sqrt(6 / (FAN_IN + FAN_OUT))),
    (xavier_uniform_, {"gain": 2.0}, "uniform", 2 * math.sqrt(6 / (FAN_IN + FAN_OUT))),
    (xavier_normal_, {}, "normal", math.sqrt(2 / (FAN_IN + FAN_OUT))),
    (xavier_normal_, {"gain": 5 / 3}, "normal", 5 / 3 * math.sqrt(2 / (FAN_IN + FAN_OUT))),
    (kaiming_uniform_, {}, "uniform", math.sqrt(2) * math.sqrt(3 / FAN_IN)),
    (kaiming_uniform_, {"a": math.sqrt(5)}, "uniform", 1 / math.sqrt(FAN_IN)),
    (kaiming_uniform_, {"mode": "fan_out", "nonlinearity": "relu"}, "uniform", math.sqrt(6 / FAN_OUT)),
    (kaiming_uniform_, {"nonlinearity": "tanh"}, "uniform", 5 / 3 * math.sqrt(3 / FAN_IN)),
    (kaiming_normal_, {}, "normal", math.sqrt(2 / FAN_IN)),
    (kaiming_normal_, {"a": 0.2, "mode": "fan_out"}, "normal", math.sqrt(2 / 1.04) / math.sqrt(FAN_OUT)),
]


@pytest.mark.parametrize(("init", "kwargs", "kind", "scale"), INITS)
def test_random_inits_match_their_formula(init: Any, kwargs: dict[str, Any], kind: str, scale: float) -> None:
    w = empty(FAN_OUT, FAN_IN)
    array = w.data
    assert init(w, generator=np.random.default_rng(0), **kwargs) is w
    assert w.data is array and w.dtype == np.float32, "filled in place, float32 kept"
    v = w.data.astype(np.float64)
    if kind == "uniform":
        assert np.abs(v).max() <= scale * (1 + 1e-6) and np.abs(v).max() > 0.99 * scale
        assert v.var() == pytest.approx(scale**2 / 3, rel=0.03)
    else:
        assert v.std() == pytest.approx(scale, rel=0.02)
        assert np.abs(v).max() > 3 * scale, "a normal draw has tails"
    assert abs(v.mean()) < 0.01 * scale
    again = init(empty(FAN_OUT, FAN_IN), generator=np.random.default_rng(0), **kwargs)
    np.testing.assert_array_equal(again.data, w.data)


def test_inits_draw_what_the_generator_draws() -> None:
    """The course's random stream: the same numbers as generator.uniform / generator.normal, cast to float32."""
    w = kaiming_uniform_(empty(4, 6), a=math.sqrt(5), generator=np.random.default_rng(3))
    bound = 1 / math.sqrt(6)
    np.testing.assert_allclose(w.data, np.random.default_rng(3).uniform(-bound, bound, (4, 6)).astype(np.float32),
                               rtol=1e-6)
    n = xavier_normal_(empty(4, 6), generator=np.random.default_rng(3))
    np.testing.assert_allclose(n.data, np.random.default_rng(3).normal(0, math.sqrt(0.2), (4, 6)).astype(np.float32),
                               rtol=1e-6)
    u = uniform_(empty(3), -2.0, 5.0, generator=np.random.default_rng(1))
    np.testing.assert_array_equal(u.data, np.random.default_rng(1).uniform(-2, 5, 3).astype(np.float32))
    m = normal_(empty(3), 1.0, 0.5, generator=np.random.default_rng(1))
    np.testing.assert_array_equal(m.data, np.random.default_rng(1).normal(1, 0.5, 3).astype(np.float32))


def test_linear_default_init_is_kaiming_uniform_with_a_sqrt5() -> None:
    layer = Linear(7, 5, generator=np.random.default_rng(0))
    gen = np.random.default_rng(0)
    weight = kaiming_uniform_(empty(5, 7), a=math.sqrt(5), generator=gen)
    bias = uniform_(empty(5), -1 / math.sqrt(7), 1 / math.sqrt(7), generator=gen)
    assert layer.bias is not None
    np.testing.assert_array_equal(layer.weight.data, weight.data)
    np.testing.assert_array_equal(layer.bias.data, bias.data)


def test_inits_keep_float64_fill_parameters_and_refuse_integers() -> None:
    w64 = Tensor(np.zeros((5, 5)), dtype=np.float64)
    xavier_uniform_(w64, generator=np.random.default_rng(0))
    assert w64.dtype == np.float64 and np.all(w64.data != 0)
    p = Parameter(np.zeros((3, 4), dtype=np.float32))
    assert kaiming_normal_(p, generator=np.random.default_rng(0)) is p and p.requires_grad and p.grad_fn is None
    for init in (xavier_uniform_, xavier_normal_, kaiming_uniform_, kaiming_normal_, uniform_, normal_):
        with pytest.raises(TypeError):
            init(empty(3, 3, dtype=np.int64))
        with pytest.raises(TypeError):
            init(np.zeros((3, 3)))  # type: ignore[type-var]
    for init in (xavier_uniform_, xavier_normal_, kaiming_uniform_, kaiming_normal_):
        with pytest.raises(ValueError):
            init(empty(4))
    a, b = kaiming_uniform_(empty(8, 8)), kaiming_uniform_(empty(8, 8))
    assert not np.array_equal(a.data, b.data), "without a generator, fresh randomness"


def test_kaiming_leaves_zero_element_tensors_alone() -> None:
    for init in (kaiming_uniform_, kaiming_normal_):
        t = empty(0, 3)
        assert init(t) is t and t.shape == (0, 3)


def test_zeros_and_ones_fill_any_dtype_in_place() -> None:
    for dtype in (np.float32, np.float64, np.int64):
        t = Tensor(np.full((2, 3), 7, dtype=dtype), dtype=dtype)
        array = t.data
        assert ones_(t) is t and t.data is array and t.dtype == dtype and np.all(t.data == 1)
        assert zeros_(t) is t and t.data is array and np.all(t.data == 0)
    with pytest.raises(TypeError):
        zeros_(np.ones(3))  # type: ignore[type-var]


def test_init_against_pytorch_when_installed() -> None:
    torch = pytest.importorskip("torch")
    init = torch.nn.init
    for name in ("linear", "conv2d", "sigmoid", "tanh", "relu", "selu", "leaky_relu"):
        assert calculate_gain(name) == pytest.approx(init.calculate_gain(name))
    for slope in (0, 0.2, math.sqrt(5), 3):
        assert calculate_gain("leaky_relu", slope) == pytest.approx(init.calculate_gain("leaky_relu", slope))
    for shape in [(3, 5), (8, 4, 3), (16, 3, 5, 5)]:
        theirs = init._calculate_fan_in_and_fan_out(torch.empty(*shape))
        assert _calculate_fan_in_and_fan_out(empty(*shape)) == tuple(theirs)
    torch.manual_seed(0)
    shape = (300, 200)
    cases: list[tuple[Any, Any, dict[str, Any], str]] = [
        (kaiming_uniform_, init.kaiming_uniform_, {"a": math.sqrt(5)}, "uniform"),
        (kaiming_uniform_, init.kaiming_uniform_, {"mode": "fan_out", "nonlinearity": "relu"}, "uniform"),
        (xavier_uniform_, init.xavier_uniform_, {"gain": 1.5}, "uniform"),
        (kaiming_normal_, init.kaiming_normal_, {"nonlinearity": "relu"}, "normal"),
        (xavier_normal_, init.xavier_normal_, {}, "normal"),
    ]
    for ours_fn, theirs_fn, kwargs, kind in cases:
        ours = ours_fn(empty(*shape), generator=np.random.default_rng(0), **kwargs).data.astype(np.float64)
        theirs = theirs_fn(torch.empty(*shape), **kwargs).double().numpy()
        if kind == "uniform":  # the same bound: both maxima lie just below it
            assert np.abs(ours).max() == pytest.approx(np.abs(theirs).max(), rel=0.01)
        assert ours.std() == pytest.approx(theirs.std(), rel=0.03)
    # nn.Linear's default: weight and bias in U(-1/sqrt(in), 1/sqrt(in)), as ours
    theirs_linear = torch.nn.Linear(400, 300)
    ours_linear = Linear(400, 300, generator=np.random.default_rng(0))
    assert ours_linear.bias is not None
    for a, b in ((ours_linear.weight.data, theirs_linear.weight), (ours_linear.bias.data, theirs_linear.bias)):
        assert np.abs(a).max() == pytest.approx(b.detach().abs().max().item(), rel=0.01)


# --------------------------------------------------------------------------- Linear


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 300), st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_linear_init_bounds_shapes_and_dtypes(fan_in: int, fan_out: int, seed: int) -> None:
    layer = Linear(fan_in, fan_out, generator=np.random.default_rng(seed))
    bound = 1 / math.sqrt(fan_in)
    assert isinstance(layer.weight, Parameter) and isinstance(layer.bias, Parameter)
    assert layer.weight.shape == (fan_out, fan_in) and layer.bias.shape == (fan_out,)
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    assert layer.weight.requires_grad and layer.bias.requires_grad
    for p in (layer.weight, layer.bias):
        assert np.all(np.abs(p.data) <= bound), f"values beyond 1/sqrt(in_features) = {bound}"
    again = Linear(fan_in, fan_out, generator=np.random.default_rng(seed))
    np.testing.assert_array_equal(layer.weight.data, again.weight.data)


def test_linear_init_fills_the_whole_range_uniformly() -> None:
    layer = Linear(400, 300, generator=np.random.default_rng(0))
    bound = 1 / math.sqrt(400)
    w = layer.weight.data / bound  # U(-1, 1): mean 0, variance 1/3, extremes near +-1
    assert w.max() > 0.99 and w.min() < -0.99
    assert abs(w.mean()) < 0.01 and abs(w.var() - 1 / 3) < 0.01
    assert layer.bias is not None and np.all(np.abs(layer.bias.data) <= bound)
    assert np.abs(layer.bias.data).max() > 0.8 * bound, "the bias is drawn from the same distribution"


def test_linear_forward_shapes_and_values() -> None:
    layer = Linear(3, 2, generator=np.random.default_rng(0))
    assert layer.bias is not None
    for shape in [(3,), (5, 3), (2, 4, 3)]:
        x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
        y = layer(Tensor(x))
        assert y.shape == (*shape[:-1], 2) and y.dtype == np.float32
        expected = x.astype(np.float64) @ layer.weight.data.T.astype(np.float64) + layer.bias.data
        np.testing.assert_allclose(y.data, expected, rtol=1e-5, atol=1e-6)
    plain = Linear(3, 2, bias=False)
    assert plain.bias is None and [n for n, _ in plain.named_parameters()] == ["weight"]
    assert repr(plain) == "Linear(in_features=3, out_features=2, bias=False)"


def test_linear_gradients() -> None:
    layer = Linear(3, 2, generator=np.random.default_rng(0))
    x = Tensor(np.arange(12, dtype=np.float32).reshape(4, 3))
    layer(x).sum().backward()
    assert layer.bias is not None and layer.weight.grad is not None and layer.bias.grad is not None
    np.testing.assert_allclose(layer.weight.grad.data, np.tile(x.data.sum(axis=0), (2, 1)))
    np.testing.assert_allclose(layer.bias.grad.data, [4.0, 4.0])
    assert layer.weight.grad.dtype == np.float32


def test_linear_errors_name_both_shapes() -> None:
    layer = Linear(3, 2)
    with pytest.raises(ValueError) as info:
        layer(Tensor(np.ones((4, 5))))
    assert "(4, 5)" in str(info.value) and "(2, 3)" in str(info.value)
    with pytest.raises(ValueError):
        layer(Tensor(1.0))
    with pytest.raises(TypeError):
        layer(np.ones((4, 3)))
    for bad in [(0, 2), (3, 0), (-1, 2)]:
        with pytest.raises(ValueError):
            Linear(*bad)


def test_linear_against_pytorch_when_installed() -> None:
    torch = pytest.importorskip("torch")
    ours = Linear(5, 3, generator=np.random.default_rng(0))
    assert ours.bias is not None
    theirs = torch.nn.Linear(5, 3)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.weight.data))
        theirs.bias.copy_(torch.from_numpy(ours.bias.data))
    x = np.random.default_rng(1).normal(size=(2, 4, 5)).astype(np.float32)
    y = ours(Tensor(x))
    expected = theirs(torch.from_numpy(x))
    np.testing.assert_allclose(y.data, expected.detach().numpy(), rtol=1e-5, atol=1e-6)
    y.sum().backward()
    expected.sum().backward()
    assert ours.weight.grad is not None and ours.bias.grad is not None
    np.testing.assert_allclose(ours.weight.grad.data, theirs.weight.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.bias.grad.data, theirs.bias.grad.numpy(), rtol=1e-5, atol=1e-5)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert repr(ours) == repr(theirs)


# --------------------------------------------------------------------------- Dropout


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.8])
def test_dropout_inverted_scaling(p: float) -> None:
    n = 200_000
    out = Dropout(p, generator=np.random.default_rng(0))(Tensor(np.ones(n)))
    assert out.dtype == np.float32 and out.shape == (n,)
    values = set(np.unique(out.data).tolist())
    assert values <= {0.0, float(np.float32(1 / (1 - p)))}
    dropped = float(np.mean(out.data == 0))
    assert abs(dropped - p) < 5 * math.sqrt(p * (1 - p) / n), f"dropped {dropped}, expected {p}"
    assert abs(float(out.data.mean()) - 1.0) < 0.02, "the expectation is kept"


def test_dropout_eval_is_the_identity_and_extremes() -> None:
    x = Tensor(np.arange(1.0, 7.0).reshape(2, 3))
    dropout = Dropout(0.5)
    assert dropout.eval()(x) is x
    assert Dropout(0.0)(x) is x
    assert not Dropout(1.0)(x).data.any()
    assert repr(Dropout(0.3)) == "Dropout(p=0.3)"
    assert Dropout(0.5)(Tensor(np.ones(4), dtype=np.float64)).dtype == np.float64


def test_dropout_is_reproducible_from_a_seed_and_differs_between_calls() -> None:
    x = Tensor(np.ones(1000))
    a, b = Dropout(0.5, generator=np.random.default_rng(7)), Dropout(0.5, generator=np.random.default_rng(7))
    first, second = a(x), a(x)
    np.testing.assert_array_equal(first.data, b(x).data)
    np.testing.assert_array_equal(second.data, b(x).data)
    assert not np.array_equal(first.data, second.data), "every call draws a new mask"


def test_dropout_gradient_uses_the_same_mask() -> None:
    x = Tensor(np.ones(100), requires_grad=True)
    out = Dropout(0.5, generator=np.random.default_rng(0))(x)
    out.sum().backward()
    assert x.grad is not None
    np.testing.assert_array_equal(x.grad.data, out.data)


@pytest.mark.parametrize("p", [-0.1, 1.5, "0.5", True, None, float("nan")])
def test_dropout_validates_p(p: object) -> None:
    with pytest.raises(ValueError):
        Dropout(p)  # type: ignore[arg-type]


def test_dropout_type_error() -> None:
    with pytest.raises(TypeError):
        Dropout(0.5)(np.ones(3))


# --------------------------------------------------------------------------- Sequential


def test_sequential() -> None:
    l1, l2 = Linear(4, 3, generator=np.random.default_rng(0)), Linear(3, 2, generator=np.random.default_rng(1))
    relu = ReLU()
    model = Sequential(l1, relu, l2)
    x = Tensor(np.random.default_rng(2).normal(size=(5, 4)))
    np.testing.assert_array_equal(model(x).data, l2(relu(l1(x))).data)
    assert len(model) == 3 and list(model) == [l1, relu, l2]
    assert model[0] is l1 and model[-1] is l2
    tail = model[1:]
    assert isinstance(tail, Sequential) and len(tail) == 2 and tail[1] is l2
    with pytest.raises(IndexError):
        model[3]
    assert Sequential()(x) is x
    assert list(model._modules) == ["0", "1", "2"], "every layer is a registered Module"

    class HasForward:
        def forward(self, x: Tensor) -> Tensor:
            return x

    for bad in ("relu", HasForward(), relu_function):
        with pytest.raises(TypeError, match="layer 1"):
            Sequential(l1, bad)
    assert repr(Sequential(Linear(3, 2), ReLU())) == (
        "Sequential(\n  (0): Linear(in_features=3, out_features=2, bias=True)\n  (1): ReLU()\n)"
    )


# --------------------------------------------------------------------------- one object model


def _activation_and_loss_modules() -> list[Module]:
    from tinytorch.core.losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss

    return [ReLU(), Sigmoid(), Tanh(), GELU(), GELU("tanh"), Softmax(dim=0), MSELoss(), CrossEntropyLoss("sum"),
            BCELoss("none"), BCEWithLogitsLoss()]


@pytest.mark.parametrize("module", _activation_and_loss_modules(), ids=repr)
def test_every_activation_and_loss_is_a_module(module: Module) -> None:
    """Calling, parameters(), train()/eval(), zero_grad(), state_dict() and the repr are Module's, defined once."""
    assert isinstance(module, Module)
    for name in ("__call__", "parameters", "train", "eval", "zero_grad", "state_dict", "__repr__"):
        assert getattr(type(module), name) is getattr(Module, name), f"{type(module).__name__}.{name} is Module's"
    assert list(module.parameters()) == [] and module.state_dict() == {} and list(module.children()) == []
    assert module.training and module.eval() is module and not module.training
    assert module.train() is module and module.training
    module.zero_grad()
    model = Sequential(Linear(3, 3, generator=np.random.default_rng(0)), module)
    assert list(model._modules.values())[1] is module
    model.eval()
    assert not module.training, "eval() on a container reaches its activations and losses"


# --------------------------------------------------------------------------- state dicts


def test_state_dict_round_trip_is_exact_and_in_place() -> None:
    model = make_model()
    state = model.state_dict()
    assert list(state) == [n for n, _ in model.named_parameters()]
    for name, param in model.named_parameters():
        assert isinstance(state[name], np.ndarray) and not np.shares_memory(state[name], param.data)
    arrays = {name: p.data for name, p in model.named_parameters()}
    for p in model.parameters():
        p.data += np.float32(1.5)  # training changes the parameters, not the snapshot
    assert not np.array_equal(state["0.scale"], model[0].scale.data)  # type: ignore[attr-defined]
    result = model.load_state_dict(state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for name, p in model.named_parameters():
        assert p.data is arrays[name], "loading copies into the existing arrays"
        np.testing.assert_array_equal(p.data, state[name])
        assert p.data.tobytes() == state[name].tobytes(), "bit-exact"

    fresh = make_model()
    fresh.load_state_dict({k: Tensor(v) for k, v in state.items()})
    x = Tensor(np.random.default_rng(0).normal(size=(2, 4)))
    np.testing.assert_array_equal(fresh.eval()(x).data, model.eval()(x).data)


def test_strict_loading_errors_and_atomicity() -> None:
    model = Linear(3, 2, generator=np.random.default_rng(0))
    original = model.state_dict()
    with pytest.raises(KeyError, match="bias"):
        model.load_state_dict({"weight": original["weight"] + 1})
    with pytest.raises(KeyError, match="extra"):
        model.load_state_dict({**original, "extra": np.zeros(1, dtype=np.float32)})
    np.testing.assert_array_equal(model.weight.data, original["weight"])

    result = model.load_state_dict({"weight": original["weight"] + 1, "extra": np.zeros(1)}, strict=False)
    assert result.missing_keys == ["bias"] and result.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(model.weight.data, original["weight"] + 1)

    with pytest.raises(ValueError) as info:
        model.load_state_dict({"weight": np.zeros((3, 2), dtype=np.float32), "bias": original["bias"]}, strict=False)
    assert "weight" in str(info.value) and "(3, 2)" in str(info.value) and "(2, 3)" in str(info.value)
    with pytest.raises(ValueError, match="float64"):
        model.load_state_dict({"weight": np.zeros((2, 3)), "bias": np.zeros(2, dtype=np.float32)})
    bad_last = {"weight": np.zeros((2, 3), dtype=np.float32), "bias": np.zeros(5, dtype=np.float32)}
    with pytest.raises(ValueError):
        model.load_state_dict(bad_last)
    np.testing.assert_array_equal(model.weight.data, original["weight"] + 1, err_msg="a failed load changes nothing")
