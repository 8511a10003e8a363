"""1957: Rosenblatt's perceptron learns to tell handwritten 4s from 9s.

Frank Rosenblatt's Mark I Perceptron (1957-58) learned a linear threshold unit with a rule that needs no
gradient: when an example is misclassified, add it to the weights (or subtract it). The perceptron
convergence theorem (Novikoff, 1962) says that on linearly separable data the rule stops making mistakes
after finitely many updates. Here the data are the real 8x8 handwritten digits shipped with the course,
restricted to 4s and 9s (a pair people confuse too), which turn out to be linearly separable; the unit is
tinytorch's ``Linear(64, 1)``.

Target: an epoch with no training mistakes (convergence) and at least 95% test accuracy.
"""

from __future__ import annotations

import numpy as np
from milestone import plt, start

from tinytorch.core.dataloader import load_digits
from tinytorch.core.layers import Linear
from tinytorch.core.tensor import Tensor

MAX_EPOCHS = 100
NEGATIVE, POSITIVE = 4, 9


def two_digits(rng: np.random.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The 4s and 9s, pixels scaled to [0, 1], labels -1 (a 4) and +1 (a 9), split 80/20 at random."""
    images, labels = load_digits()
    keep = (labels.data == NEGATIVE) | (labels.data == POSITIVE)
    x = images.data[keep] / 16.0
    y = np.where(labels.data[keep] == POSITIVE, 1.0, -1.0).astype(np.float32)
    order = rng.permutation(len(y))
    cut = int(0.8 * len(y))
    train, test = order[:cut], order[cut:]
    return Tensor(x[train]), Tensor(y[train]), Tensor(x[test]), Tensor(y[test])


def predict(unit: Linear, x: Tensor) -> np.ndarray:
    """The threshold unit: +1 where w.x + b > 0, else -1. (No gradients: the rule does not need any.)"""
    return np.where(unit(x).data[..., 0] > 0, 1.0, -1.0)


def perceptron_epoch(unit: Linear, x: Tensor, y: Tensor, rng: np.random.Generator) -> int:
    """One pass in random order: w += y x and b += y for every mistake. Returns the number of mistakes."""
    mistakes = 0
    for i in rng.permutation(len(y.data)):
        if predict(unit, x[i : i + 1])[0] != y.data[i]:
            unit.weight.data += y.data[i] * x.data[i]
            assert unit.bias is not None
            unit.bias.data += y.data[i]
            mistakes += 1
    return mistakes


def main() -> int:
    run = start("1957_perceptron", __doc__ or "")
    rng = run.rng()
    x_train, y_train, x_test, y_test = two_digits(rng)
    unit = Linear(64, 1, generator=rng)
    unit.weight.data[...] = 0.0  # Rosenblatt started from zero weights
    assert unit.bias is not None
    unit.bias.data[...] = 0.0
    mistakes = []
    for _ in range(MAX_EPOCHS):
        mistakes.append(perceptron_epoch(unit, x_train, y_train, rng))
        if mistakes[-1] == 0:
            break
    accuracy = float(np.mean(predict(unit, x_test) == y_test.data))
    converged = mistakes[-1] == 0
    print(f"mistakes per epoch: {mistakes}")

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    epochs = range(1, len(mistakes) + 1)
    left.plot(epochs, mistakes, "o-", color="tab:blue")
    left.set_xticks(list(epochs))
    left.set(xlabel="epoch", ylabel="training mistakes", title="The perceptron rule converges")
    limit = float(np.abs(unit.weight.data).max()) or 1.0
    image = right.imshow(unit.weight.data.reshape(8, 8), cmap="RdBu_r", vmin=-limit, vmax=limit)
    right.set(title=f"Learned weights (red: evidence for {POSITIVE})", xticks=[], yticks=[])
    figure.colorbar(image, ax=right, fraction=0.046)
    figure.suptitle(f"1957 perceptron on digits {NEGATIVE} vs {POSITIVE}: test accuracy {accuracy:.1%}")
    plot = run.save(figure)
    verdict = f"converged after {len(mistakes)} epochs" if converged else f"not converged in {MAX_EPOCHS} epochs"
    result = f"{verdict}, test accuracy {accuracy:.1%} on {len(y_test.data)} held-out digits"
    return run.finish(result, converged and accuracy >= 0.95, plot)


if __name__ == "__main__":
    raise SystemExit(main())
