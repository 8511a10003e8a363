"""tinytorch shaped like PyTorch: ``tinytorch.nn``, ``.optim``, ``.utils.data``, ``manual_seed``, lazy names."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT

import tinytorch as tt
from course.modules import Course, discover
from course.package import NAMESPACES, export_notebook, write_namespaces

ENTRIES = [
    (namespace, package_module, name)
    for namespace, modules in NAMESPACES.items()
    for package_module, names in modules.items()
    for name in names.split()
]


@pytest.mark.parametrize(("namespace", "package_module", "name"), ENTRIES, ids=[f"{e[0]}.{e[2]}" for e in ENTRIES])
def test_every_table_name_is_the_course_modules_own_object(namespace: str, package_module: str, name: str) -> None:
    found = getattr(importlib.import_module(namespace), name)
    assert found is getattr(importlib.import_module(f"tinytorch.{package_module}"), name)
    assert name in importlib.import_module(namespace).__all__


def test_pytorch_spellings() -> None:
    from tinytorch.core.activations import relu
    from tinytorch.core.attention import MultiheadAttention, scaled_dot_product_attention
    from tinytorch.core.convolutions import BatchNorm2d, Conv2d, Flatten, MaxPool2d, conv2d
    from tinytorch.core.dataloader import DataLoader
    from tinytorch.core.layers import Linear, kaiming_uniform_
    from tinytorch.core.optimizers import Adam
    from tinytorch.core.training import WarmupCosineLR
    from tinytorch.models.transformer import LayerNorm, layer_norm
    from tinytorch.perf.quantization import MinMaxObserver
    from tinytorch.text.embeddings import Embedding, embedding

    assert tt.nn.Linear is Linear and tt.nn.functional.relu is relu and tt.nn.init.kaiming_uniform_ is kaiming_uniform_
    assert tt.optim.Adam is Adam and tt.optim.lr_scheduler.WarmupCosineLR is WarmupCosineLR
    assert tt.utils.data.DataLoader is DataLoader
    assert tt.nn.Embedding is Embedding and tt.nn.functional.embedding is embedding
    assert tt.nn.Conv2d is Conv2d and tt.nn.MaxPool2d is MaxPool2d and tt.nn.Flatten is Flatten
    assert tt.nn.BatchNorm2d is BatchNorm2d and tt.nn.functional.conv2d is conv2d
    assert tt.nn.MultiheadAttention is MultiheadAttention
    assert tt.nn.functional.scaled_dot_product_attention is scaled_dot_product_attention
    assert tt.nn.LayerNorm is LayerNorm and tt.nn.functional.layer_norm is layer_norm
    assert tt.ao.quantization.MinMaxObserver is MinMaxObserver
    assert isinstance(tt.tensor([1.0, 2.0]), tt.Tensor)
    with tt.no_grad():
        assert not tt.is_grad_enabled()
    assert "Linear" in dir(tt.nn) and "functional" in dir(tt.nn)


def test_a_misspelled_name_is_an_attribute_error() -> None:
    assert not hasattr(tt.nn, "Linaer")
    with pytest.raises(AttributeError, match=r"tinytorch\.nn.*Linaer"):
        tt.nn.Linaer  # type: ignore[attr-defined]  # noqa: B018


def test_manual_seed_makes_code_without_a_generator_repeat() -> None:
    def draws() -> list[np.ndarray]:
        tt.manual_seed(7)
        layer = tt.nn.Linear(4, 3)
        drop = tt.nn.Dropout(0.5)
        x = tt.ones(2, 4)
        mask = drop(x).data
        loader = tt.utils.data.DataLoader(tt.utils.data.TensorDataset(tt.arange(10)), batch_size=10, shuffle=True)
        (order,) = next(iter(loader))
        assert layer.bias is not None
        return [layer.weight.data.copy(), layer.bias.data.copy(), mask, order.data, tt.rand(3).data, tt.randn(2).data]

    first, second = draws(), draws()
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert tt.manual_seed(7) is tt.default_generator
    assert not np.array_equal(tt.rand(5).data, tt.rand(5).data), "the shared generator moves on between draws"


# --------------------------------------------------------------------------- a learner's partial package


def _partial_package(tmp_path: Path, numbers: set[int]) -> Path:
    """A package like a learner's after exporting only ``numbers`` (with the reference solutions)."""
    course = Course(ROOT)
    package = tmp_path / "tinytorch"
    write_namespaces(course, package)
    for module in discover(course):
        if module.number in numbers:
            assert export_notebook(module.source_notebook, module, package)
    return package


def _run(code: str, package: Path, *, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(package.parent)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def test_a_package_with_only_01_and_02_imports_and_names_what_is_missing(tmp_path: Path) -> None:
    package = _partial_package(tmp_path / "learner", {1, 2})
    ran = _run(
        """
        import tinytorch as tt
        import tinytorch.nn, tinytorch.nn.functional, tinytorch.nn.init, tinytorch.optim
        import tinytorch.optim.lr_scheduler, tinytorch.utils.data
        print("from", tt.__file__)
        import tinytorch.core.activations as activations
        print(tt.nn.functional.relu(tt.tensor([-1.0, 2.0])).tolist(), "relu" in dir(tt.nn.functional))
        print("Linear" in dir(tt.nn), "ReLU" in dir(tt.nn), "ReLU" in dir(activations))
        try:
            tt.nn.Linear
        except ImportError as error:
            print("missing:", error)
        try:
            from tinytorch.core.activations import ReLU
        except ImportError as error:
            print("missing:", error)
        try:
            from tinytorch.utils.data import DataLoader
        except ImportError as error:
            print("missing:", error)
        """,
        package,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0] == f"from {package / '__init__.py'}"
    assert lines[1] == "[0.0, 2.0] True"
    assert lines[2] == "False False False", "dir() lists only the names that can be used now"
    assert "03_layers" in lines[3] and "`course export 03`" in lines[3] and "tinytorch.nn.Linear" in lines[3]
    assert "tinytorch.core.activations.ReLU comes from course module 03_layers" in lines[4], lines[4]
    assert "`course export 03`" in lines[4]
    assert "05_dataloader" in lines[5] and "`course export 05`" in lines[5]


def test_module_02s_path_to_the_activation_classes_works_once_03_is_exported(tmp_path: Path) -> None:
    package = _partial_package(tmp_path / "learner", {1, 2, 3})
    ran = _run(
        """
        import tinytorch as tt
        from tinytorch.core.activations import ReLU, Softmax
        from tinytorch.core.layers import Module
        print(ReLU is tt.nn.ReLU, isinstance(Softmax(dim=1), Module), tt.nn.Sequential(tt.nn.Linear(2, 2), ReLU()))
        """,
        package,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("True True Sequential(\n"), ran.stdout


# --------------------------------------------------------------------------- the same script as PyTorch

SCRIPT = """
import numpy as np
{import_line}

torch.manual_seed(0)
digits = np.load({digits!r})
x = digits["images"].astype(np.float32) / 16.0
y = digits["labels"].astype(np.int64)
order = np.random.default_rng(0).permutation(len(x))
train, test = order[:1437], order[1437:]
mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 0.1
x_train, y_train = torch.tensor((x[train] - mean) / std), torch.tensor(y[train])
x_test, y_test = torch.tensor((x[test] - mean) / std), torch.tensor(y[test])

loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_train, y_train), batch_size=32, shuffle=True)
model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
loss_fn = torch.nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

for epoch in range(15):
    model.train()
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()

model.eval()
with torch.no_grad():
    predicted = model(x_test).argmax(dim=1)
print((predicted == y_test).float().mean().item())
"""


IMPORTS = {"tinytorch": "import tinytorch as torch", "torch": "import torch"}


def _accuracy(framework: str, tmp_path: Path) -> float:
    script = SCRIPT.format(import_line=IMPORTS[framework], digits=str(ROOT / "datasets" / "digits.npz"))
    ran = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert ran.returncode == 0, ran.stderr
    return float(ran.stdout.split()[-1])


def test_the_twin_scripts_differ_only_in_the_import_line() -> None:
    ours = SCRIPT.format(import_line=IMPORTS["tinytorch"], digits="d").splitlines()
    theirs = SCRIPT.format(import_line=IMPORTS["torch"], digits="d").splitlines()
    differing = [(a, b) for a, b in zip(ours, theirs, strict=True) if a != b]
    assert differing == [("import tinytorch as torch", "import torch")]


def test_a_pytorch_training_script_runs_on_tinytorch_as_on_pytorch(tmp_path: Path) -> None:
    ours = _accuracy("tinytorch", tmp_path)
    assert ours >= 0.95, f"the PyTorch-style MLP reached only {ours:.3f} on tinytorch"
    if importlib.util.find_spec("torch") is None:
        pytest.skip(f"tinytorch reached {ours:.3f}; PyTorch is not installed (pip install torch==2.13.0) to compare")
    theirs = _accuracy("torch", tmp_path)
    assert abs(ours - theirs) <= 0.01, f"tinytorch {ours:.3f} vs PyTorch {theirs:.3f}: more than a point apart"
