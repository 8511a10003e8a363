"""1998: a convolutional network, LeNet-5's shape, learns to tell clothes apart in Fashion-MNIST.

LeCun, Bottou, Bengio and Haffner's "Gradient-based learning applied to document recognition" (Proc. IEEE, 1998)
trained LeNet-5 end to end by backpropagation: convolutions share a few weights across the whole image, pooling
shrinks it, and fully connected layers classify. Here is the same shape with the course's layers: two 5x5
``Conv2d`` layers, each followed by ``ReLU`` and a 2x2 ``MaxPool2d`` (module 09; the 1998 net used scaled tanh and
trainable subsampling), ``Flatten``, and three ``Linear`` layers (03), trained with ``CrossEntropyLoss`` (04),
autograd (06), ``Adam`` (07) and module 08's loop with a cosine schedule. The data is Fashion-MNIST (Xiao,
Rasul and Vollgraf, 2017: 70,000 28x28 grey images of ten kinds of clothing, MNIST's drop-in replacement), read
from Debian's ``dataset-fashion-mnist`` package by module 05's ``load_fashion_mnist``.

The test set is only evaluated, after every epoch for the curve; nothing is chosen with it.

Target: at least 89% accuracy on the 10,000 test images (the whole run, data loading included, takes a few
minutes on a 2-core machine). ``--quick``: 10,000 training images for two epochs, the first 2,000 test images,
at least 75%, in under a minute.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator
from milestone import Run, plt, start
from threadpoolctl import threadpool_limits

from tinytorch import Tensor, no_grad
from tinytorch.core.dataloader import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, load_fashion_mnist
from tinytorch.core.training import History, evaluate, fit
from tinytorch.nn import Conv2d, CrossEntropyLoss, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential
from tinytorch.optim import Adam
from tinytorch.optim.lr_scheduler import WarmupCosineLR
from tinytorch.utils.data import DataLoader, TensorDataset

BATCH_SIZE = 64
LR = 2e-3
# (training images, epochs, test images, target accuracy): the full run, and --quick
FULL = (60_000, 6, 10_000, 0.89)
QUICK = (10_000, 2, 2_000, 0.75)
THREADS = 1  # NumPy's BLAS threads: the default (one per core) made small matmuls many times slower on a busy machine


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=Path(FASHION_MNIST_ROOT),
                        help=f"folder of Fashion-MNIST's IDX files (default: {FASHION_MNIST_ROOT})")


def lenet5(rng: np.random.Generator) -> Sequential:
    """LeNet-5's layout on 28x28 inputs: 6 and 16 feature maps, then 120, 84 and 10 units."""
    return Sequential(
        Conv2d(1, 6, 5, padding=2, generator=rng), ReLU(), MaxPool2d(2),   # 6 x 28 x 28 -> 6 x 14 x 14
        Conv2d(6, 16, 5, generator=rng), ReLU(), MaxPool2d(2),             # 16 x 10 x 10 -> 16 x 5 x 5
        Flatten(),
        Linear(400, 120, generator=rng), ReLU(),
        Linear(120, 84, generator=rng), ReLU(),
        Linear(84, 10, generator=rng),
    )


def fashion_sets(
    folder: Path, n_train: int, n_test: int, rng: np.random.Generator
) -> tuple[TensorDataset, TensorDataset]:
    """(N, 1, 28, 28) images standardized with the training images' mean and standard deviation; a random
    ``n_train`` of the 60,000 training images, the first ``n_test`` test images."""
    x_train, y_train = load_fashion_mnist(folder, train=True)
    x_test, y_test = load_fashion_mnist(folder, train=False)
    keep = np.sort(rng.permutation(len(y_train.data))[:n_train])
    train_images, test_images = x_train.data[keep], x_test.data[:n_test]
    mean, std = float(train_images.mean()), float(train_images.std())

    def standardize(images: np.ndarray[Any, Any]) -> Tensor:
        return Tensor(((images - mean) / std)[:, None].astype(np.float32))

    return (TensorDataset(standardize(train_images), Tensor(y_train.data[keep])),
            TensorDataset(standardize(test_images), Tensor(y_test.data[:n_test])))


def train(model: Module, train_loader: DataLoader, test_loader: DataLoader, epochs: int, lr: float = LR) -> History:
    """Module 08's ``fit`` with ``Adam`` and a cosine schedule after a quarter epoch of warm-up, NumPy's BLAS pinned
    to ``THREADS`` thread; the test loss and accuracy after every epoch are only recorded (also used by 2018)."""
    optimizer = Adam(model.parameters(), lr=lr)
    steps = epochs * len(train_loader)
    scheduler = WarmupCosineLR(optimizer, warmup_steps=len(train_loader) // 4, total_steps=steps)
    with threadpool_limits(limits=THREADS):
        return fit(model, CrossEntropyLoss(), optimizer, train_loader, test_loader, epochs=epochs, scheduler=scheduler)


def predictions(model: Module, loader: DataLoader) -> np.ndarray[Any, Any]:
    model.eval()
    with no_grad():
        found = [model(images).data.argmax(axis=1) for images, _ in loader]
    model.train()
    return np.concatenate(found)


def plot(run: Run, history: History, model: Sequential, test_set: TensorDataset, predicted: np.ndarray[Any, Any],
         title: str) -> Path:
    """Curves (loss, accuracy), 24 misclassified test images with true and predicted labels, the first
    layer's six learned 5x5 filters."""
    figure = plt.figure(figsize=(13, 10.5), layout="constrained")
    rows = figure.subfigures(3, 1, height_ratios=[1.0, 1.9, 0.8])
    assert isinstance(rows, np.ndarray)  # an array of three subfigures (a single one for subfigures(1, 1))
    top, middle, bottom = rows
    ax_loss, ax_acc = top.subplots(1, 2)
    epochs = range(1, history.epochs + 1)
    ax_loss.plot(epochs, history.train_loss, "o-", label="train")
    ax_loss.plot(epochs, history.val_loss, "s-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.plot(epochs, history.train_acc, "o-", label="train")
    ax_acc.plot(epochs, history.val_acc, "s-", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend()
    images, labels = test_set.tensors[0].data[:, 0], test_set.tensors[1].data
    wrong = np.flatnonzero(predicted != labels)[:24]
    middle.suptitle(f"misclassified test images ({np.count_nonzero(predicted != labels)} of {len(labels)}): "
                    "true -> predicted", fontsize=11)
    for ax, i in zip(middle.subplots(3, 8).ravel(), np.pad(wrong, (0, 24 - len(wrong)), constant_values=-1),
                     strict=True):
        ax.axis("off")
        if i >= 0:
            ax.imshow(images[i], cmap="gray_r")
            ax.set_title(f"{FASHION_MNIST_CLASSES[labels[i]]}\n-> {FASHION_MNIST_CLASSES[predicted[i]]}", fontsize=8)
    conv1 = model[0]
    assert isinstance(conv1, Conv2d)
    filters = conv1.weight.data[:, 0]
    bottom.suptitle("the first convolution's six learned 5x5 filters", fontsize=11)
    limit = float(np.abs(filters).max())
    for ax, kernel in zip(bottom.subplots(1, len(filters)), filters, strict=True):
        ax.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_xticks([])
        ax.set_yticks([])
    top.suptitle(title, fontsize=13)
    return run.save(figure)


def main() -> int:
    run = start("1998_cnn", __doc__ or "",
                quick="10,000 training images for 2 epochs, 2,000 test images, target 75% (under a minute)",
                options=add_options)
    n_train, epochs, n_test, target = QUICK if run.quick else FULL
    rng = run.rng()
    try:
        train_set, test_set = fashion_sets(run.args.data, n_train, n_test, rng)
    except FileNotFoundError as err:
        print(f"{run.name}: {err} (to this script: --data FOLDER)", file=sys.stderr)
        return 2
    print(f"{'quick run' if run.quick else 'full run'}: {n_train:,} training images, {epochs} epochs of batch "
          f"{BATCH_SIZE}, {n_test:,} test images, target {target:.0%}; NumPy's BLAS pinned to {THREADS} thread "
          f"(threadpoolctl); data loaded in {run.seconds():.1f} s")
    train_loader = DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True, generator=rng)
    test_loader = DataLoader(test_set, batch_size=1000)
    model = lenet5(rng)
    history = train(model, train_loader, test_loader, epochs)
    with threadpool_limits(limits=THREADS):
        _, accuracy = evaluate(model, test_loader, CrossEntropyLoss())
        predicted = predictions(model, test_loader)
    for epoch in range(history.epochs):
        print(f"epoch {epoch + 1}/{epochs}: train loss {history.train_loss[epoch]:.4f}, train accuracy "
              f"{history.train_acc[epoch]:.2%}, test accuracy {history.val_acc[epoch]:.2%} "
              f"({history.epoch_time[epoch]:.1f} s)")
    kind = "quick run" if run.quick else "LeNet-5"
    path = plot(run, history, model, test_set, predicted,
                f"1998 {kind} on Fashion-MNIST: {accuracy:.1%} on {n_test:,} test images")
    result = (f"test accuracy {accuracy:.2%} on {n_test:,} Fashion-MNIST test images after {epochs} epochs on "
              f"{n_train:,} training images (target {target:.0%}{', quick run' if run.quick else ''})")
    return run.finish(result, accuracy >= target, path)


if __name__ == "__main__":
    raise SystemExit(main())
