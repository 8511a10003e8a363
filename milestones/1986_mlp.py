"""1986: backpropagation trains a multi-layer perceptron to read handwritten digits.

Rumelhart, Hinton and Williams's "Learning representations by back-propagating errors" (Nature, 1986)
showed that gradient descent through hidden layers learns useful internal features. Here everything the
course built so far does it together: the real 8x8 UCI digits (1,797 images) loaded and batched by module
05, an MLP 64-128-10 of ``Linear`` layers with ``ReLU`` (modules 02-03; the 1986 paper used sigmoids),
``CrossEntropyLoss`` (04), gradients from autograd (06), ``SGD`` with momentum (07), and the training loop,
cosine schedule with warmup and curves from module 08.

Target: at least 97% accuracy on 20% of the digits held out from training.
"""

from __future__ import annotations

import numpy as np
from milestone import start

from tinytorch.core.dataloader import DataLoader, TensorDataset, load_digits, random_split
from tinytorch.core.layers import Linear, ReLU, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import SGD
from tinytorch.core.tensor import Tensor
from tinytorch.core.training import WarmupCosineLR, evaluate, fit, plot_history

EPOCHS = 20
BATCH_SIZE = 32
TARGET = 0.97


def digit_sets(rng: np.random.Generator) -> tuple[TensorDataset, TensorDataset]:
    """80/20 split of the digits, standardized with the training set's pixel statistics only."""
    images, labels = load_digits()
    train_part, test_part = random_split(TensorDataset(images, labels), [0.8, 0.2], generator=rng)
    x_train, x_test = images.data[train_part.indices], images.data[test_part.indices]
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1.0  # +1: some border pixels are always 0

    def standardize(x: np.ndarray) -> Tensor:
        return Tensor((x - mean) / std)

    return (
        TensorDataset(standardize(x_train), Tensor(labels.data[train_part.indices])),
        TensorDataset(standardize(x_test), Tensor(labels.data[test_part.indices])),
    )


def main() -> int:
    run = start("1986_mlp", __doc__ or "")
    rng = run.rng()
    train_set, test_set = digit_sets(rng)
    train_loader = DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True, generator=rng)
    test_loader = DataLoader(test_set, batch_size=256)
    model = Sequential(Linear(64, 128, generator=rng), ReLU(), Linear(128, 10, generator=rng))
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9)
    steps = EPOCHS * len(train_loader)
    scheduler = WarmupCosineLR(optimizer, warmup_steps=len(train_loader), total_steps=steps)
    loss_fn = CrossEntropyLoss()
    history = fit(model, loss_fn, optimizer, train_loader, test_loader, epochs=EPOCHS, scheduler=scheduler)
    _, accuracy = evaluate(model, test_loader, loss_fn)
    figure = plot_history(history)
    figure.suptitle(f"1986 MLP 64-128-10 on digits: {accuracy:.1%} held-out accuracy")
    figure.tight_layout()  # again, now that there is a title to make room for
    plot = run.save(figure)
    result = f"test accuracy {accuracy:.2%} on {len(test_set)} held-out digits after {EPOCHS} epochs"
    return run.finish(result, accuracy >= TARGET, plot)


if __name__ == "__main__":
    raise SystemExit(main())
