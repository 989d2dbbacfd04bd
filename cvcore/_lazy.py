"""Lazy re-exports for package ``__init__`` files.

``import cvcore`` should be quick (the command line starts with it) and should not compile or even
import Numba until a kernel is needed. A package lists the names it offers and the submodule each
lives in; the submodule is imported on first access (PEP 562 module ``__getattr__``).
"""
from __future__ import annotations

import importlib


def attach(package: str, exports: dict[str, list[str]], submodules: tuple[str, ...] = ()):
    """Return ``(__getattr__, __dir__, __all__)`` for a package.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : dict of str to list of str
        Submodule name (relative, e.g. ``"images"``) -> the names it provides.
    submodules : tuple of str
        Subpackages reachable as attributes (``cvcore.preprocess``).
    """
    where = {name: module for module, names in exports.items() for name in names}
    public = sorted(where) + sorted(submodules)

    def __getattr__(name):
        if name in where:
            module = importlib.import_module(f"{package}.{where[name]}")
            return getattr(module, name)
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return public

    return __getattr__, __dir__, public
