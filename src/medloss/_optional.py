"""Optional dependencies: the losses, metrics and calibrators need only torch, numpy and scipy; the
plots, the workflow (CLI, reports) and the isotonic calibrator import their extras on first use and
say which extra to install when one is missing."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T")

#: import name -> (pip name, medloss extra that installs it)
OPTIONAL = {
    "matplotlib": ("matplotlib", "plot"),
    "pandas": ("pandas", "cli"),
    "pyarrow": ("pyarrow", "cli"),
    "sklearn": ("scikit-learn", "cli"),
    "tqdm": ("tqdm", "cli"),
}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise an ImportError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        pip_name, extra = OPTIONAL.get(top, (top, "all"))
        raise ImportError(
            f"{purpose} needs {pip_name}, which is not installed: pip install 'medloss[{extra}]' "
            f"(or 'medloss[all]')",
            name=module,
        ) from err


def progress_bar(iterable: Iterable[T], *, enabled: bool, **kwargs: Any) -> Iterator[T] | Iterable[T]:
    """A tqdm progress bar over ``iterable`` when ``enabled`` and tqdm is installed; the bare
    iterable otherwise (a missing bar changes no result)."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, **kwargs)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_counter(total: int, *, enabled: bool, **kwargs: Any) -> Any:
    """A tqdm bar of ``total`` steps advanced with ``.update(n)`` (a context manager), or a silent
    stand-in when not ``enabled`` or tqdm is not installed."""
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return _NoBar()
        return tqdm(total=total, **kwargs)
    return _NoBar()
