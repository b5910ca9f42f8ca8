"""Weighted sums of named losses, with each term's value kept for logging."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .._validation import check_number
from .registry import OUTPUT_WORDS, _loss_entry, get_loss

_TERM = re.compile(r"^\s*(?:(?P<weight>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*)?(?P<name>[A-Za-z_]\w*)\s*$")


def parse_loss_spec(spec: str) -> list[tuple[float, str]]:
    """``"0.5*ce + 0.5*soft_f1"`` -> ``[(0.5, "ce"), (0.5, "soft_f1")]`` (a bare name has weight 1).

    Args:
        spec: terms ``WEIGHT*NAME`` or ``NAME`` joined by ``+``; names from :func:`available_losses`.

    Returns:
        The ``(weight, name)`` pairs in the order given.

    Raises:
        ValueError: an empty spec, a term that does not parse, an unknown name, or a name given twice.

    Examples:
        >>> parse_loss_spec("0.5*ce + 0.5*soft_f1")
        [(0.5, 'ce'), (0.5, 'soft_f1')]
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"loss spec must be a non-empty string such as '0.5*ce+0.5*soft_f1'; got {spec!r}")
    terms = []
    for part in spec.split("+"):
        m = _TERM.match(part)
        if m is None:
            raise ValueError(f"cannot parse loss term {part.strip()!r} in {spec!r}; expected 'NAME' or 'WEIGHT*NAME'")
        weight = float(m["weight"]) if m["weight"] else 1.0
        _loss_entry(m["name"])  # unknown names fail here, listing the known ones
        terms.append((weight, m["name"]))
    names = [n for _, n in terms]
    if len(set(names)) != len(names):
        raise ValueError(f"loss spec {spec!r} names a loss twice")
    return terms


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _checked_terms(terms: Any, *, build_classes: bool) -> dict[str, tuple[LossFn, float]]:
    """``name -> (loss, weight)`` from ``name -> loss`` or ``name -> (loss, weight)``, weights checked."""
    if not isinstance(terms, Mapping) or not terms:
        raise ValueError("`terms` must be a non-empty mapping name -> loss or (loss, weight)")
    checked = {}
    for name, term in terms.items():
        loss, weight = term if isinstance(term, tuple) else (term, 1.0)
        if build_classes and isinstance(loss, type) and issubclass(loss, nn.Module):
            loss = loss()
        if not callable(loss) or isinstance(loss, type):
            raise TypeError(f"term {name!r} must be a loss (a module or function) or a (loss, weight) pair; "
                            f"got {type(loss).__name__}")
        checked[name] = (loss, check_number(weight, f"weight of term {name!r}", low=0.0))
    return checked


def _weighted_sum(input: torch.Tensor, target: torch.Tensor, terms: Mapping[str, tuple[LossFn, float]]
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``sum_i w_i L_i(input, target)`` and each term's unweighted, detached value."""
    total: torch.Tensor | None = None
    values = {}
    for name, (loss, weight) in terms.items():
        value = loss(input, target)
        values[name] = value.detach()
        term = value * weight
        total = term if total is None else total + term
    assert total is not None  # terms is never empty
    return total, values


def combined_loss(input: torch.Tensor, target: torch.Tensor, terms: Mapping[str, Any], *,
                  return_terms: bool = False) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""Weighted sum of losses, ``L = sum_i w_i L_i(input, target)``: the functional form of :class:`CombinedLoss`.

    Args:
        input: the network output every term takes.
        target: the target every term takes.
        terms: mapping name -> loss, or name -> ``(loss, weight)``; a loss is any callable
            ``loss(input, target)`` (a functional twin with its options bound by ``functools.partial``, or a
            module). Weights must be finite and >= 0; a bare loss has weight 1.
        return_terms: also return each term's unweighted, detached value (default False).

    Returns:
        The weighted sum (a tensor), or ``(sum, {name: value})`` with ``return_terms``.

    Raises:
        ValueError: ``terms`` empty or not a mapping, or a weight < 0 or not finite.
        TypeError: a term that is not callable.

    Examples:
        >>> from functools import partial
        >>> from medloss.losses import dice_loss, focal_loss
        >>> x, t = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
        >>> value = combined_loss(x, t, {"dice": (dice_loss, 0.5), "focal": (partial(focal_loss, gamma=2.0), 0.5)})
        >>> torch.allclose(value, 0.5 * dice_loss(x, t) + 0.5 * focal_loss(x, t, gamma=2.0))
        True
    """
    total, values = _weighted_sum(input, target, _checked_terms(terms, build_classes=False))
    return (total, values) if return_terms else total


class CombinedLoss(nn.Module):
    r"""Weighted sum of named losses, ``L = sum_i w_i L_i(input, target)``.

    The imbalanced-binary mix ``alpha * CE + (1 - alpha) * soft-F1`` is
    ``CombinedLoss({"ce": (FocalLoss(gamma=0, mode="binary"), 0.5), "soft_f1": (SoftF1Loss(), 0.5)})``
    or ``CombinedLoss.from_spec("0.5*ce+0.5*soft_f1", mode="binary")``.

    After each forward, :attr:`last_terms` maps every name to its (unweighted, detached) value,
    ready for a logger.

    Args:
        terms: mapping name -> loss module, or name -> ``(loss module, weight)``. A loss *class*
            instead of a module is instantiated with no arguments. Weights must be finite and >= 0;
            a bare module has weight 1. (A plain function is accepted too: :func:`combined_loss`.)

    Returns:
        The weighted sum, a tensor of the terms' common shape (a scalar for reduced terms).

    Raises:
        ValueError: ``terms`` empty or not a mapping, or a weight < 0 or not finite.
        TypeError: a term that is neither a module nor a (module, weight) pair.

    Examples:
        >>> x, t = torch.randn(8, 1), torch.randint(0, 2, (8, 1)).float()
        >>> loss = CombinedLoss.from_spec("0.5*ce+0.5*soft_f1", mode="binary")
        >>> value = loss(x, t)
        >>> torch.allclose(value, 0.5 * loss.last_terms["ce"] + 0.5 * loss.last_terms["soft_f1"])
        True
    """

    def __init__(self, terms: Mapping[str, Any]) -> None:
        super().__init__()
        checked = _checked_terms(terms, build_classes=True)
        for name, (loss, _) in checked.items():
            if not isinstance(loss, nn.Module):
                raise TypeError(f"term {name!r} must be an nn.Module or a (module, weight) pair; got "
                                f"{type(loss).__name__} (combined_loss takes plain functions)")
        self.weights: dict[str, float] = {name: weight for name, (_, weight) in checked.items()}
        self.terms = nn.ModuleDict({name: loss for name, (loss, _) in checked.items()})
        self.last_terms: dict[str, torch.Tensor] = {}

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> CombinedLoss:
        """Build from ``"0.5*ce+0.5*soft_f1"``; each keyword goes to every term that accepts it."""
        parsed = [(weight, _loss_entry(name)) for weight, name in parse_loss_spec(spec)]
        outputs = {entry.output for _, entry in parsed}
        if len(outputs) > 1:
            said = ", ".join(f"{entry.name!r}: {OUTPUT_WORDS[entry.output]}" for _, entry in parsed)
            raise ValueError(f"the terms of {spec!r} expect different network outputs ({said}): they cannot be "
                             "added up")
        terms = {}
        for weight, entry in parsed:
            own = {k: v for k, v in kwargs.items() if entry.accepts(k)}
            try:
                terms[entry.name] = (get_loss(entry.name, **own), weight)
            except TypeError as err:  # say it as from_spec's caller writes it
                raise TypeError(f"{err}".replace(f"get_loss({entry.name!r}, ", "CombinedLoss.from_spec(spec, ")) \
                    from None
        return cls(terms)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total, self.last_terms = _weighted_sum(input, target, {n: (m, self.weights[n]) for n, m in self.terms.items()})
        return total

    def extra_repr(self) -> str:
        return " + ".join(f"{w:g}*{n}" for n, w in self.weights.items())
