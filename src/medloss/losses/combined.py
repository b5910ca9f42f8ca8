"""Weighted sums of named losses, with each term's value kept for logging."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .._validation import check_number
from .registry import OUTPUT_WORDS, get_loss, loss_entry

_TERM = re.compile(r"^\s*(?:(?P<weight>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*)?(?P<name>[A-Za-z_]\w*)\s*$")


def parse_loss_spec(spec: str) -> list[tuple[float, str]]:
    """``"0.5*ce + 0.5*soft_f1"`` -> ``[(0.5, "ce"), (0.5, "soft_f1")]`` (a bare name has weight 1).

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
        loss_entry(m["name"])  # unknown names fail here, listing the known ones
        terms.append((weight, m["name"]))
    names = [n for _, n in terms]
    if len(set(names)) != len(names):
        raise ValueError(f"loss spec {spec!r} names a loss twice")
    return terms


class CombinedLoss(nn.Module):
    r"""Weighted sum of named losses, ``L = sum_i w_i L_i(input, target)``.

    Article 001's ``alpha * CE + (1 - alpha) * soft-F1`` is
    ``CombinedLoss({"ce": (FocalLoss(gamma=0, mode="binary"), 0.5), "soft_f1": (SoftF1Loss(), 0.5)})``
    or ``CombinedLoss.from_spec("0.5*ce+0.5*soft_f1", mode="binary")``.

    After each forward, :attr:`last_terms` maps every name to its (unweighted, detached) value,
    ready for a logger.

    Args:
        terms: mapping name -> loss module, or name -> ``(loss module, weight)``. A loss *class*
            instead of a module is instantiated with no arguments. Weights must be finite and >= 0;
            a bare module has weight 1.

    Examples:
        >>> x, t = torch.randn(8, 1), torch.randint(0, 2, (8, 1)).float()
        >>> loss = CombinedLoss.from_spec("0.5*ce+0.5*soft_f1", mode="binary")
        >>> value = loss(x, t)
        >>> torch.allclose(value, 0.5 * loss.last_terms["ce"] + 0.5 * loss.last_terms["soft_f1"])
        True
    """

    def __init__(self, terms: Mapping[str, Any]) -> None:
        super().__init__()
        if not isinstance(terms, Mapping) or not terms:
            raise ValueError("`terms` must be a non-empty mapping name -> loss or (loss, weight)")
        modules: dict[str, nn.Module] = {}
        self.weights: dict[str, float] = {}
        for name, term in terms.items():
            loss, weight = term if isinstance(term, tuple) else (term, 1.0)
            if isinstance(loss, type) and issubclass(loss, nn.Module):
                loss = loss()
            if not isinstance(loss, nn.Module):
                raise TypeError(
                    f"term {name!r} must be an nn.Module or a (module, weight) pair; got {type(loss).__name__}"
                )
            modules[name] = loss
            self.weights[name] = check_number(weight, f"weight of term {name!r}", low=0.0)
        self.terms = nn.ModuleDict(modules)
        self.last_terms: dict[str, torch.Tensor] = {}

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> CombinedLoss:
        """Build from ``"0.5*ce+0.5*soft_f1"``; each keyword goes to every term that accepts it."""
        parsed = [(weight, loss_entry(name)) for weight, name in parse_loss_spec(spec)]
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
        total: torch.Tensor | None = None
        values = {}
        for name, loss in self.terms.items():
            value = loss(input, target)
            values[name] = value.detach()
            term = value * self.weights[name]
            total = term if total is None else total + term
        self.last_terms = values
        assert total is not None
        return total

    def extra_repr(self) -> str:
        return " + ".join(f"{w:g}*{n}" for n, w in self.weights.items())
