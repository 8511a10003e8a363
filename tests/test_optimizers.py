"""tinytorch.core.optimizers: trajectories against the documented update rules (float64), PyTorch when installed,
checkpoints, parameter groups, in-place updates and errors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinytorch.core.layers import Parameter
from tinytorch.core.optimizers import SGD, Adam, AdamW, Optimizer
from tinytorch.core.tensor import Tensor

Array = npt.NDArray[Any]
SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, max_side=5)


# ---------------------------------------------------------------------- independent float64 references
def sgd_reference(
    p0: Array,
    grads: Sequence[Array],
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
) -> list[Array]:
    """torch.optim.SGD's documented algorithm in float64; the parameter after each step."""
    theta = p0.astype(np.float64)
    buf: Array | None = None
    out = []
    for grad in grads:
        g = grad.astype(np.float64) * (-1.0 if maximize else 1.0)
        if weight_decay != 0:
            g = g + weight_decay * theta
        if momentum != 0:
            buf = g.copy() if buf is None else momentum * buf + (1.0 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        theta = theta - lr * g
        out.append(theta)
    return out


def adam_reference(
    p0: Array,
    grads: Sequence[Array],
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    maximize: bool,
    decoupled: bool,
) -> list[Array]:
    """torch.optim.Adam (decoupled=False) / AdamW (decoupled=True) documented algorithms in float64."""
    theta = p0.astype(np.float64)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    v_max = np.zeros_like(theta)
    out = []
    for t, grad in enumerate(grads, start=1):
        g = grad.astype(np.float64) * (-1.0 if maximize else 1.0)
        if weight_decay != 0:
            if decoupled:
                theta = theta * (1.0 - lr * weight_decay)
            else:
                g = g + weight_decay * theta
        m = betas[0] * m + (1.0 - betas[0]) * g
        v = betas[1] * v + (1.0 - betas[1]) * g**2
        m_hat = m / (1.0 - betas[0] ** t)
        if amsgrad:
            v_max = np.maximum(v_max, v)
            v_hat = v_max / (1.0 - betas[1] ** t)
        else:
            v_hat = v / (1.0 - betas[1] ** t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(theta)
    return out


def random_problem(seed: int, shape: tuple[int, ...], steps: int) -> tuple[Array, list[Array]]:
    gen = np.random.default_rng(seed)
    p0 = gen.standard_normal(shape).astype(np.float32)
    scales = gen.uniform(0.1, 3.0, size=steps)
    grads = [(gen.standard_normal(shape) * s).astype(np.float32) for s in scales]
    return p0, grads


def run_steps(make: Callable[[list[Parameter]], Optimizer], p0: Array, grads: Sequence[Array]) -> list[Array]:
    """Step our optimizer once per gradient; returns copies of the parameter after each step and checks that
    the parameter and its gradient keep their arrays and dtypes."""
    p = Parameter(p0.copy())
    array = p.data
    opt = make([p])
    out = []
    for g in grads:
        p.grad = Tensor(g.copy())
        grad_array = p.grad.data
        opt.step()
        assert p.data is array and p.dtype == np.float32
        assert p.grad is not None and p.grad.data is grad_array
        np.testing.assert_array_equal(grad_array, g)  # the gradient is never modified
        assert p.grad_fn is None and p.requires_grad
        out.append(p.data.copy())
    return out


# ---------------------------------------------------------------------- hyperparameter strategies
@st.composite
def sgd_options(draw: st.DrawFn) -> dict[str, Any]:
    momentum = draw(st.sampled_from([0.0, 0.5, 0.9]) | st.floats(0.0, 0.99))
    nesterov = momentum > 0 and draw(st.booleans())
    dampening = 0.0 if nesterov else draw(st.sampled_from([0.0, 0.1]) | st.floats(0.0, 0.9))
    return {
        "lr": draw(st.floats(0.0, 0.5)),
        "momentum": momentum,
        "dampening": dampening,
        "weight_decay": draw(st.sampled_from([0.0, 0.01]) | st.floats(0.0, 0.5)),
        "nesterov": nesterov,
        "maximize": draw(st.booleans()),
    }


@st.composite
def adam_options(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "lr": draw(st.floats(0.0, 0.1)),
        "betas": (draw(st.floats(0.0, 0.99)), draw(st.sampled_from([0.999, 0.9]) | st.floats(0.5, 0.9999))),
        "eps": draw(st.sampled_from([1e-8, 1e-6]) | st.floats(1e-8, 1e-2)),
        "weight_decay": draw(st.sampled_from([0.0, 0.01]) | st.floats(0.0, 0.5)),
        "amsgrad": draw(st.booleans()),
        "maximize": draw(st.booleans()),
    }


PROBLEM = st.tuples(st.integers(0, 2**32 - 1), SHAPES, st.integers(1, 6))


# ---------------------------------------------------------------------- trajectories vs the formulas
@settings(deadline=None, max_examples=60)
@given(PROBLEM, sgd_options())
def test_sgd_trajectories_follow_the_documented_algorithm(problem: tuple[int, tuple[int, ...], int],
                                                          options: dict[str, Any]) -> None:
    p0, grads = random_problem(*problem)
    ours = run_steps(lambda ps: SGD(ps, **options), p0, grads)
    for step, (got, expected) in enumerate(zip(ours, sgd_reference(p0, grads, **options), strict=True), 1):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=f"step {step}, {options}")


@settings(deadline=None, max_examples=60)
@given(PROBLEM, adam_options(), st.booleans())
def test_adam_and_adamw_trajectories_follow_the_documented_algorithms(
    problem: tuple[int, tuple[int, ...], int], options: dict[str, Any], decoupled: bool
) -> None:
    p0, grads = random_problem(*problem)
    cls = AdamW if decoupled else Adam
    ours = run_steps(lambda ps: cls(ps, **options), p0, grads)
    expected_all = adam_reference(p0, grads, decoupled=decoupled, **options)
    for step, (got, expected) in enumerate(zip(ours, expected_all, strict=True), 1):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6,
                                   err_msg=f"step {step}, {cls.__name__} {options}")


def test_adam_first_step_has_size_lr_whatever_the_gradient_scale() -> None:
    g = np.array([1e-4, -3.0, 250.0, -1e5], dtype=np.float32)
    (after,) = run_steps(lambda ps: Adam(ps, lr=0.05), np.zeros(4, dtype=np.float32), [g])
    np.testing.assert_allclose(after, -0.05 * np.sign(g), rtol=1e-3)


def test_adamw_is_not_adam_with_l2() -> None:
    p0, grads = random_problem(0, (6,), 5)
    kwargs: dict[str, Any] = {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.3}
    adamw = run_steps(lambda ps: AdamW(ps, **kwargs), p0, grads)[-1]
    adam_l2 = run_steps(lambda ps: Adam(ps, **kwargs), p0, grads)[-1]
    assert not np.allclose(adamw, adam_l2, rtol=1e-4, atol=1e-6)
    # with a zero gradient AdamW only shrinks the weights, by exactly 1 - lr * weight_decay
    (shrunk,) = run_steps(lambda ps: AdamW(ps, **kwargs), p0, [np.zeros(6, dtype=np.float32)])
    np.testing.assert_allclose(shrunk, p0 * (1 - 0.01 * 0.3), rtol=1e-6)
    assert AdamW([Parameter([1.0])]).param_groups[0]["weight_decay"] == 1e-2


# ---------------------------------------------------------------------- PyTorch
@settings(deadline=None, max_examples=40)
@given(PROBLEM, sgd_options())
def test_sgd_matches_torch(problem: tuple[int, tuple[int, ...], int], options: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    p0, grads = random_problem(*problem)
    ours = run_steps(lambda ps: SGD(ps, **options), p0, grads)
    theirs = torch_steps(torch, lambda ps: torch.optim.SGD(ps, **options), p0, grads)
    for got, expected in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@settings(deadline=None, max_examples=40)
@given(PROBLEM, adam_options(), st.booleans())
def test_adam_and_adamw_match_torch(problem: tuple[int, tuple[int, ...], int], options: dict[str, Any],
                                    decoupled: bool) -> None:
    torch = pytest.importorskip("torch")
    p0, grads = random_problem(*problem)
    name = "AdamW" if decoupled else "Adam"
    ours = run_steps(lambda ps: (AdamW if decoupled else Adam)(ps, **options), p0, grads)
    theirs = torch_steps(torch, lambda ps: getattr(torch.optim, name)(ps, **options), p0, grads)
    for got, expected in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def torch_steps(torch: Any, make: Callable[[list[Any]], Any], p0: Array, grads: Sequence[Array]) -> list[Array]:
    p = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = make([p])
    out = []
    for g in grads:
        p.grad = torch.from_numpy(g.copy())
        opt.step()
        out.append(p.detach().numpy().copy())
    return out


def test_state_dict_layout_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    p0s, _ = zip(*(random_problem(i, (3, 2), 1) for i in range(3)), strict=True)
    ours_params = [Parameter(p.copy()) for p in p0s]
    theirs_params = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in p0s]
    groups: list[dict[str, Any]] = [{"params": ours_params[:2]}, {"params": ours_params[2:], "lr": 0.1}]
    ours = Adam(groups, lr=0.01)
    theirs = torch.optim.Adam([{"params": theirs_params[:2]}, {"params": theirs_params[2:], "lr": 0.1}], lr=0.01)
    for p, q in ((ours_params[0], theirs_params[0]), (ours_params[2], theirs_params[2])):
        p.grad = Tensor(np.ones((3, 2), dtype=np.float32))
        q.grad = torch.ones(3, 2)
    ours.step()
    theirs.step()
    sd, tsd = ours.state_dict(), theirs.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [g["params"] for g in tsd["param_groups"]]
    assert sorted(sd["state"]) == sorted(tsd["state"]) == [0, 2]
    for key, entry in sd["state"].items():
        assert set(entry) == set(tsd["state"][key])
        assert entry["step"] == int(tsd["state"][key]["step"])
        for name in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_allclose(entry[name], tsd["state"][key][name].numpy(), rtol=1e-6)
    for group, tgroup in zip(sd["param_groups"], tsd["param_groups"], strict=True):
        for key in ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize"):
            assert group[key] == tgroup[key]


# ---------------------------------------------------------------------- checkpoints
@settings(deadline=None, max_examples=25)
@given(st.integers(0, 2**32 - 1), st.integers(0, 4), st.sampled_from(["sgd", "adam", "adamw", "amsgrad"]))
def test_state_dict_round_trip_resumes_identically(seed: int, split: int, kind: str) -> None:
    makers: dict[str, Callable[[list[dict[str, Any]]], Optimizer]] = {
        "sgd": lambda groups: SGD(groups, lr=0.05, momentum=0.9, weight_decay=0.01),
        "adam": lambda groups: Adam(groups, lr=0.01),
        "adamw": lambda groups: AdamW(groups, lr=0.01, weight_decay=0.1),
        "amsgrad": lambda groups: Adam(groups, lr=0.01, amsgrad=True, betas=(0.9, 0.5)),
    }
    gen = np.random.default_rng(seed)
    shapes = [(4, 3), (3,), (2, 2)]
    start = [gen.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[gen.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(6)]

    def build() -> tuple[list[Parameter], Optimizer]:
        params = [Parameter(a.copy()) for a in start]
        return params, makers[kind]([{"params": params[:2]}, {"params": params[2:], "lr": 0.002}])

    params, opt = build()
    for step in range(split):
        for p, g in zip(params, grads[step], strict=True):
            p.grad = Tensor(g)
        opt.step()
    checkpoint = opt.state_dict()
    frozen = {k: {n: (v.copy() if isinstance(v, np.ndarray) else v) for n, v in e.items()}
              for k, e in checkpoint["state"].items()}
    params2, opt2 = build()
    for p2, p in zip(params2, params, strict=True):
        p2.data[...] = p.data
    opt2.load_state_dict(checkpoint)
    for step in range(split, 6):
        for p, p2, g in zip(params, params2, grads[step], strict=True):
            p.grad, p2.grad = Tensor(g), Tensor(g.copy())
        opt.step()
        opt2.step()
    for p, p2 in zip(params, params2, strict=True):
        np.testing.assert_array_equal(p.data, p2.data)
    for key, entry in frozen.items():  # the checkpoint was a copy: training on did not change it
        for name, value in entry.items():
            np.testing.assert_array_equal(checkpoint["state"][key][name], value)
    for entry in opt2.state.values():  # loaded state is not shared with the checkpoint
        for name, value in entry.items():
            if isinstance(value, np.ndarray):
                assert all(not np.shares_memory(value, e[name]) for e in checkpoint["state"].values())


def test_load_state_dict_copies_into_existing_state_and_restores_hyperparameters() -> None:
    p = Parameter(np.zeros(3, dtype=np.float32))
    opt = Adam([p], lr=0.1)
    p.grad = Tensor(np.ones(3, dtype=np.float32))
    opt.step()
    checkpoint = opt.state_dict()
    m_before = opt.state[p]["exp_avg"]
    opt.step()
    opt.param_groups[0]["lr"] = 0.5
    opt.load_state_dict(checkpoint)
    assert opt.state[p]["exp_avg"] is m_before, "loading writes into the existing state arrays"
    np.testing.assert_array_equal(m_before, checkpoint["state"][0]["exp_avg"])
    assert opt.state[p]["step"] == 1 and opt.param_groups[0]["lr"] == 0.1
    assert opt.param_groups[0]["params"][0] is p


def test_load_state_dict_rejects_what_does_not_fit_and_changes_nothing() -> None:
    a, b = Parameter(np.zeros(3, dtype=np.float32)), Parameter(np.zeros((2, 2), dtype=np.float32))
    opt = SGD([a, b], lr=0.1, momentum=0.9)
    a.grad, b.grad = Tensor(np.ones(3, dtype=np.float32)), Tensor(np.ones((2, 2), dtype=np.float32))
    opt.step()
    checkpoint = opt.state_dict()
    cases: list[tuple[Optimizer, str]] = [
        (SGD([{"params": [Parameter(np.zeros(3, dtype=np.float32))]},
              {"params": [Parameter(np.zeros((2, 2), dtype=np.float32))]}], lr=0.3), "groups"),
        (SGD([Parameter(np.zeros(3, dtype=np.float32))], lr=0.3), "parameters"),
        (SGD([Parameter(np.zeros(3, dtype=np.float32)), Parameter(np.zeros(4, dtype=np.float32))], lr=0.3), "shape"),
    ]
    for target, word in cases:
        with pytest.raises(ValueError, match=word):
            target.load_state_dict(checkpoint)
        assert target.state == {} and target.param_groups[0]["lr"] == 0.3
    with pytest.raises(ValueError):
        opt.load_state_dict({"state": {}})


# ---------------------------------------------------------------------- groups, state, bookkeeping
def test_param_groups_use_their_own_hyperparameters() -> None:
    p0, grads = random_problem(1, (4,), 4)
    cases: list[tuple[Callable[..., Optimizer], dict[str, Any]]] = [
        (SGD, {"momentum": 0.9}), (Adam, {}), (AdamW, {"weight_decay": 0.2})
    ]
    for cls, kwargs in cases:
        a, b = Parameter(p0.copy()), Parameter(p0.copy())
        groups: list[dict[str, Any]] = [{"params": [a]}, {"params": [b], "lr": 0.05}]
        opt = cls(groups, lr=0.01, **kwargs)
        assert [g["lr"] for g in opt.param_groups] == [0.01, 0.05]
        for g in grads:
            a.grad, b.grad = Tensor(g), Tensor(g.copy())
            opt.step()
        alone_a = run_steps(lambda ps: cls(ps, lr=0.01, **kwargs), p0, grads)[-1]  # noqa: B023 (used at once)
        alone_b = run_steps(lambda ps: cls(ps, lr=0.05, **kwargs), p0, grads)[-1]  # noqa: B023
        np.testing.assert_array_equal(a.data, alone_a)
        np.testing.assert_array_equal(b.data, alone_b)


def test_parameters_without_gradients_are_skipped_and_get_no_state() -> None:
    cases: list[tuple[Callable[..., Optimizer], dict[str, Any]]] = [
        (SGD, {"lr": 0.1, "momentum": 0.9}), (Adam, {}), (AdamW, {"weight_decay": 0.5})
    ]
    for opt_class, kwargs in cases:
        used, unused = Parameter(np.ones(2, dtype=np.float32)), Parameter(np.ones(3, dtype=np.float32))
        opt = opt_class([used, unused], **kwargs)
        used.grad = Tensor(np.ones(2, dtype=np.float32))
        opt.step()
        np.testing.assert_array_equal(unused.data, np.ones(3))
        assert unused not in opt.state and used in opt.state
        assert opt.state_bytes() == sum(v.nbytes for v in opt.state[used].values() if isinstance(v, np.ndarray))


def test_state_bytes_counts_the_optimizer_memory() -> None:
    params = [Parameter(np.zeros((5, 4), dtype=np.float32)), Parameter(np.zeros(4, dtype=np.float32))]
    nbytes = sum(p.nbytes for p in params)
    cases: list[tuple[Callable[..., Optimizer], dict[str, Any], int]] = [
        (SGD, {"lr": 0.1}, 0), (SGD, {"lr": 0.1, "momentum": 0.5}, 1), (Adam, {}, 2), (AdamW, {}, 2),
        (Adam, {"amsgrad": True}, 3),
    ]
    for opt_class, kwargs, copies in cases:
        opt = opt_class(params, **kwargs)
        assert opt.state_bytes() == 0
        for p in params:
            p.grad = Tensor(np.ones(p.shape, dtype=np.float32))
        opt.step()
        assert opt.state_bytes() == copies * nbytes
        for entry in opt.state.values():
            for value in entry.values():
                if isinstance(value, np.ndarray):
                    assert value.dtype == np.float32


def test_state_arrays_are_updated_in_place() -> None:
    p = Parameter(np.ones(3, dtype=np.float32))
    for opt in (SGD([p], lr=0.1, momentum=0.9), Adam([p], amsgrad=True)):
        p.grad = Tensor(np.ones(3, dtype=np.float32))
        opt.step()
        arrays = {name: value for name, value in opt.state[p].items() if isinstance(value, np.ndarray)}
        for _ in range(3):
            p.grad = Tensor(np.full(3, 0.5, dtype=np.float32))
            opt.step()
        assert all(opt.state[p][name] is value for name, value in arrays.items())


def test_transposed_gradients_give_the_same_update() -> None:
    gen = np.random.default_rng(0)
    p0 = gen.standard_normal((5, 7)).astype(np.float32)
    grads = [gen.standard_normal((5, 7)).astype(np.float32) for _ in range(3)]
    for make in (lambda ps: SGD(ps, lr=0.1, momentum=0.9), lambda ps: Adam(ps, lr=0.1)):
        row, col = Parameter(p0.copy()), Parameter(p0.copy())
        opt_row, opt_col = make([row]), make([col])
        for g in grads:
            row.grad, col.grad = Tensor(g), Tensor(np.asfortranarray(g))
            opt_row.step()
            opt_col.step()
        np.testing.assert_array_equal(row.data, col.data)
        assert col.data.flags.c_contiguous


def test_zero_grad() -> None:
    a, b = Parameter(np.ones(2, dtype=np.float32)), Parameter(np.ones(2, dtype=np.float32))
    opt = SGD([{"params": [a]}, {"params": [b]}], lr=0.1)
    a.grad = Tensor(np.ones(2, dtype=np.float32))
    array = a.grad.data
    opt.zero_grad(set_to_none=False)
    assert a.grad is not None and a.grad.data is array and not array.any() and b.grad is None
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_float64_parameters_keep_float64() -> None:
    p = Parameter(Tensor(np.array([1.0, -2.0]), dtype=np.float64))
    opt = Adam([p], lr=0.1)
    p.grad = Tensor(np.array([0.5, 0.5]), dtype=np.float64)
    opt.step()
    assert p.dtype == np.float64 and opt.state[p]["exp_avg"].dtype == np.float64
    np.testing.assert_allclose(p.data, [0.9, -2.1], rtol=1e-7)


def test_bad_arguments() -> None:
    p = Parameter(np.zeros(3, dtype=np.float32))
    with pytest.raises(TypeError):
        SGD(p, lr=0.1)  # type: ignore[arg-type]  # a single tensor, not an iterable of tensors
    for bad in ([], [p, p]):
        with pytest.raises(ValueError):
            SGD(bad, lr=0.1)
    with pytest.raises(TypeError):
        SGD({p}, lr=0.1)
    with pytest.raises(TypeError):
        SGD([p, np.zeros(3)], lr=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError):
        SGD([Tensor([1.0], requires_grad=True) * 2.0], lr=0.1)
    sgd_bad: list[dict[str, Any]] = [{"lr": -0.1}, {"momentum": -0.1}, {"weight_decay": -0.1}, {"nesterov": True},
                                     {"nesterov": True, "momentum": 0.9, "dampening": 0.5}]
    for kwargs in sgd_bad:
        with pytest.raises(ValueError):
            SGD([p], **kwargs)
    adam_bad: list[dict[str, Any]] = [{"lr": -0.1}, {"eps": -1.0}, {"betas": (1.0, 0.999)}, {"betas": (0.9, 1.0)},
                                      {"weight_decay": -0.1}]
    for kwargs in adam_bad:
        with pytest.raises(ValueError):
            Adam([p], **kwargs)
        with pytest.raises(ValueError):
            AdamW([p], **kwargs)
    p.grad = Tensor(np.ones(2, dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        SGD([p], lr=0.1).step()
    with pytest.raises(NotImplementedError):
        Optimizer([p], {"lr": 0.1}).step()


def test_repr_lists_the_groups_like_torch() -> None:
    text = repr(SGD([Parameter([1.0])], lr=0.5, momentum=0.9))
    assert text.startswith("SGD (\nParameter Group 0\n") and "    lr: 0.5\n" in text and text.endswith(")")
