"""1969: a single layer cannot learn XOR; one hidden layer can.

Minsky and Papert's *Perceptrons* (1969) proved that a single-layer perceptron computes only linearly
separable functions, and XOR is not one: no line puts (0,1) and (1,0) on one side and (0,0) and (1,1) on the
other. The way out, a hidden layer trained by backpropagation, took until 1986 to become practical. Here both
are trained the same way (tinytorch's autograd, ``BCEWithLogitsLoss`` and ``SGD`` with momentum) on XOR's
truth table: the single layer stays at chance loss, ln 2, and misclassifies at least one point; the
2-8-1 network with a ``Tanh`` hidden layer gets all four right.

Target: the single layer below 100% accuracy and the hidden-layer network at 100%.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from milestone import plt, start

from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Linear, Module, Sequential, Tanh
from tinytorch.core.losses import BCEWithLogitsLoss
from tinytorch.core.optimizers import SGD
from tinytorch.core.tensor import Tensor

STEPS = 1000
INPUTS = Tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
TARGETS = Tensor([[0.0], [1.0], [1.0], [0.0]])


def train(model: Module, steps: int = STEPS) -> list[float]:
    """Full-batch gradient descent on the four points; returns the loss after every step."""
    loss_fn = BCEWithLogitsLoss()
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model(INPUTS), TARGETS)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.item()))
    return losses


def accuracy(model: Module) -> float:
    with no_grad():
        predicted = model(INPUTS).data > 0
    return float(np.mean(predicted == (TARGETS.data > 0.5)))


def decision_map(ax: Axes, model: Module, title: str) -> None:
    """Shade where the model says 1, and mark the four XOR points."""
    grid = np.linspace(-0.5, 1.5, 201, dtype=np.float32)
    xx, yy = np.meshgrid(grid, grid)
    with no_grad():
        logits = model(Tensor(np.stack([xx.ravel(), yy.ravel()], axis=1))).data.reshape(xx.shape)
    ax.contourf(xx, yy, 1 / (1 + np.exp(-logits)), levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.8)
    ax.contour(xx, yy, logits, levels=[0.0], colors="black", linewidths=1.5)
    for (x, y), target in zip(INPUTS.data, TARGETS.data[:, 0], strict=True):
        ax.scatter(x, y, s=160, c="tab:red" if target else "tab:blue", edgecolors="white", linewidths=2)
    ax.set(title=title, xlabel="$x_1$", ylabel="$x_2$", xlim=(-0.5, 1.5), ylim=(-0.5, 1.5), aspect="equal")


def main() -> int:
    run = start("1969_xor", __doc__ or "")
    single = Linear(2, 1, generator=run.rng())
    hidden = Sequential(Linear(2, 8, generator=run.rng()), Tanh(), Linear(8, 1, generator=run.rng()))
    single_losses, hidden_losses = train(single), train(hidden)
    single_acc, hidden_acc = accuracy(single), accuracy(hidden)

    figure, (curves, left, right) = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
    curves.plot(single_losses, label=f"single layer (accuracy {single_acc:.0%})")
    curves.plot(hidden_losses, label=f"one hidden layer (accuracy {hidden_acc:.0%})")
    curves.axhline(np.log(2), color="gray", linestyle="--", label="ln 2: chance")
    curves.set(xlabel="step", ylabel="binary cross-entropy", title="Training on XOR's truth table", yscale="log")
    curves.legend()
    decision_map(left, single, f"Single layer: one straight line at best ({single_acc:.0%})")
    decision_map(right, hidden, f"2-8-1 with Tanh: a bent boundary ({hidden_acc:.0%})")
    plot = run.save(figure)
    result = (
        f"single layer: loss {single_losses[-1]:.3f} (ln 2 = {np.log(2):.3f}), accuracy {single_acc:.0%}; "
        f"hidden layer: loss {hidden_losses[-1]:.4f}, accuracy {hidden_acc:.0%}"
    )
    return run.finish(result, single_acc < 1.0 and hidden_acc == 1.0, plot)


if __name__ == "__main__":
    raise SystemExit(main())
