"""Lazy names for tinytorch's PyTorch-shaped namespaces (PEP 562).

This file is copied verbatim into every built package as ``tinytorch/_lazy.py`` (the reference one and
each learner's), so it imports nothing from the course tool. A namespace such as ``tinytorch.nn`` binds
``__getattr__`` and ``__dir__`` from ``lazy_names``: a name is imported from its course module the first
time it is used, so a package with only modules 01-02 exported still imports, and using a name whose
module is not exported yet raises ``NotExportedError`` naming the course module and the command to run.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType


class NotExportedError(ModuleNotFoundError):
    """A name whose course module is not in this package yet (``course export NN`` puts it there).

    A ``ModuleNotFoundError`` (an ``ImportError``), so that ``from tinytorch.nn import Linear`` shows this
    message; an ``AttributeError`` would be replaced by Python's generic "cannot import name".
    """


def _exported(package_module: str) -> bool:
    try:
        return importlib.util.find_spec(package_module) is not None
    except ModuleNotFoundError:  # a parent package (``tinytorch.core``) is missing too
        return False


def lazy_names(
    namespace: str, names: Mapping[str, tuple[str, str]], submodules: Sequence[str] = ()
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for the module ``namespace``.

    ``names`` maps each public name to ``(package module that defines it, course module that exports it)``,
    e.g. ``{"Linear": ("tinytorch.core.layers", "03_layers")}``; ``submodules`` are child namespaces
    (``"functional"``), imported on first use. A resolved name is stored in the namespace, so the next use
    is a plain attribute lookup.
    """

    def getattr_(name: str) -> object:
        if name in submodules:
            return importlib.import_module(f"{namespace}.{name}")
        if name not in names:
            raise AttributeError(f"module {namespace!r} has no attribute {name!r}")
        package_module, course_module = names[name]
        number = course_module.split("_", 1)[0]
        if not _exported(package_module):
            raise NotExportedError(
                f"{namespace}.{name} comes from course module {course_module} ({package_module}), which is not "
                f"exported yet: finish it and run `course export {number}`.",
                name=package_module,
            )
        module: ModuleType = importlib.import_module(package_module)
        try:
            value = getattr(module, name)
        except AttributeError:
            raise NotExportedError(
                f"{namespace}.{name}: {package_module} has no {name!r}; export course module {course_module} "
                f"again with `course export {number}`.",
                name=package_module,
            ) from None
        setattr(sys.modules[namespace], name, value)
        return value

    def dir_() -> list[str]:
        """The names usable now: those whose course module is exported, and the child namespaces."""
        defined = vars(sys.modules[namespace])
        ready = [name for name, (package_module, _) in names.items() if _exported(package_module)]
        return sorted({*defined, *ready, *submodules})

    return getattr_, dir_
