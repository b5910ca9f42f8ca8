"""Name -> loss registry used by :class:`CombinedLoss` specs and the ``medloss`` CLI."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

#: what a network must output for a registered loss (see LossEntry.output)
OUTPUTS = ("class_logits", "score", "conditional_logits", "coral_logits")
#: the outputs in words, for error messages
OUTPUT_WORDS = {"class_logits": "one logit per class", "score": "one score per sample (cumulative link)",
                "conditional_logits": "K - 1 conditional logits (CORN)", "coral_logits": "K - 1 CORAL logits"}


@dataclass(frozen=True)
class LossEntry:
    """One registered loss: how to build it and what it is for.

    Attributes:
        name: the registered name (as a CLI ``--loss`` spec writes it).
        factory: the loss class (or a function returning a module).
        description: one line for ``medloss losses`` and the docs.
        tasks: ``"classification"``, ``"segmentation"``, ``"ordinal"``, ``"detection"``...
        weight_arg: the keyword through which per-class weights reach the loss (None: it takes none).
        output: what the network outputs for K classes (see :meth:`n_outputs`).

    Examples:
        >>> entry = {e.name: e for e in available_losses()}["corn"]
        >>> entry.output, entry.n_outputs(5)
        ('conditional_logits', 4)
    """

    name: str
    factory: Callable[..., nn.Module]
    description: str
    tasks: tuple[str, ...]
    #: keyword through which per-class weights reach this loss (None: it takes none)
    weight_arg: str | None = None
    #: what the network must output for K classes: "class_logits" (K, or 1 in binary mode),
    #: "score" (one value: cumulative link models), "conditional_logits" (K - 1: CORN) or
    #: "coral_logits" (K - 1 from a CORAL layer: one shared score plus K - 1 biases)
    output: str = "class_logits"

    def n_outputs(self, num_classes: int, *, binary: bool = False) -> int:
        """Width of the network output this loss expects for ``num_classes`` classes."""
        if self.output == "score":
            return 1
        if self.output in ("conditional_logits", "coral_logits"):
            return num_classes - 1
        return 1 if binary else num_classes

    def accepts(self, keyword: str) -> bool:
        """Whether ``factory`` takes ``keyword``: a class's ``**kwargs`` are followed to its bases' ``__init__``."""
        if not isinstance(self.factory, type):
            params = inspect.signature(self.factory).parameters
            return keyword in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
        for cls in self.factory.__mro__:
            if cls is nn.Module or "__init__" not in vars(cls):
                if cls is nn.Module:
                    return False
                continue
            params = inspect.signature(vars(cls)["__init__"]).parameters
            if keyword in params:
                return True
            if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
                return False
        return False


_REGISTRY: dict[str, LossEntry] = {}


def register_loss(
    name: str,
    factory: Callable[..., nn.Module],
    description: str,
    *,
    tasks: tuple[str, ...],
    weight_arg: str | None = None,
    output: str = "class_logits",
) -> None:
    """Register ``factory`` (a loss class or a function returning a module) under ``name``.

    Args:
        name: an identifier, unique in the registry.
        factory: the loss class, or a function returning a module.
        description: one line saying what it is.
        tasks: the tasks it serves.
        weight_arg: the keyword that takes per-class weights (default None: none).
        output: ``"class_logits"`` (default), ``"score"``, ``"conditional_logits"`` or ``"coral_logits"``.

    Returns:
        None.

    Raises:
        ValueError: ``name`` not an identifier or already registered, an unknown ``output``.

    Examples:
        >>> import torch
        >>> import torch.nn as nn
        >>> class L1(nn.Module):
        ...     def forward(self, input, target):
        ...         return (input - target).abs().mean()
        >>> register_loss("doc_l1", L1, "Mean absolute error (a docstring example).", tasks=("regression",))
        >>> get_loss("doc_l1")(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0]))
        tensor(2.)
    """
    if not name.isidentifier():
        raise ValueError(f"`name` must be an identifier such as 'soft_f1'; got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"a loss named {name!r} is already registered")
    if output not in OUTPUTS:
        raise ValueError(f"`output` must be one of {', '.join(map(repr, OUTPUTS))}; got {output!r}")
    _REGISTRY[name] = LossEntry(name, factory, description, tasks, weight_arg, output)


def available_losses() -> list[LossEntry]:
    """All registered losses, sorted by name.

    Returns:
        A list of :class:`LossEntry`.

    Examples:
        >>> entry = {e.name: e for e in available_losses()}["dice"]
        >>> entry.factory.__name__, entry.tasks
        ('DiceLoss', ('segmentation',))
    """
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def _loss_entry(name: str) -> LossEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown loss {name!r}; registered losses: {known}") from None


def get_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build the loss registered as ``name`` with ``kwargs``; unknown keywords are an error.

    Args:
        name: a registered name (:func:`available_losses`).
        **kwargs: the loss's own keyword arguments.

    Returns:
        The loss module.

    Raises:
        ValueError: an unknown ``name`` (the message lists the known ones), or a value the loss rejects.
        TypeError: a keyword the loss does not take, or a required one missing.

    Examples:
        >>> loss = get_loss("tversky", alpha=0.5, beta=0.5)
        >>> type(loss).__name__, loss.alpha, loss.beta
        ('TverskyLoss', 0.5, 0.5)
    """
    entry = _loss_entry(name)
    unknown = [k for k in kwargs if not entry.accepts(k)]
    if unknown:
        raise TypeError(f"loss {name!r} takes no argument(s) {unknown}")
    missing = [p.name for p in inspect.signature(entry.factory).parameters.values()
               if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in kwargs]
    if missing:
        example = ", ".join(f"{m}=..." for m in missing)
        raise TypeError(f"loss {name!r} needs the argument(s) {', '.join(map(repr, missing))}: "
                        f"get_loss({name!r}, {example})")
    return entry.factory(**kwargs)
