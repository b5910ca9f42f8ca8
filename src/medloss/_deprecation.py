"""Old spellings that keep working for one minor release, with a ``FutureWarning`` naming the new one."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

REMOVED_IN = "0.3"


def renamed_keywords(**renames: str) -> Callable[[F], F]:
    """Accept each old keyword of ``renames`` (old name -> new name) with a FutureWarning.

    Passing both spellings of one argument is a TypeError, as passing one argument twice is.
    """

    def decorate(fn: F) -> F:
        name = fn.__name__

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(f"{name}() got `{old}` and `{new}`: pass `{new}` only "
                                    f"(`{old}` is its old spelling)")
                warnings.warn(f"{name}({old}=...) is deprecated and will be removed in medloss {REMOVED_IN}; "
                              f"pass `{new}`", FutureWarning, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def reordered_positionals(first: str, second: str, old_order: str) -> Callable[[F], F]:
    """Warn when ``first`` and ``second`` both arrive by position to a function whose value depends on
    their order and whose order changed: a caller of the old order would get a silently different answer.

    Passing ``second`` by keyword (the new order is certain then) silences the warning.
    """

    def decorate(fn: F) -> F:
        name = fn.__name__
        position = list(inspect.signature(fn).parameters).index(second)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if len(args) > position:
                warnings.warn(
                    f"{name}() takes the prediction first since medloss 0.2: ({first}, {second}), was {old_order}. "
                    f"Pass `{second}=` by keyword to confirm the order and silence this warning (it goes in "
                    f"medloss {REMOVED_IN})", FutureWarning, stacklevel=2,
                )
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
