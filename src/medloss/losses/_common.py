"""Machinery shared by the losses: fp32 islands, a power with a finite gradient at 0 (the focal
modulating terms and second derivatives of the fused ops live in :mod:`medloss.ops`)."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def fp32_island():
    """Disable autocast: the loss arithmetic runs in fp32 (or float64) whatever the caller uses."""
    with torch.autocast("cpu", enabled=False):
        if torch.cuda.is_available():  # pragma: no cover - no GPU on CI
            with torch.autocast("cuda", enabled=False):
                yield
        else:
            yield


def upcast(x: torch.Tensor) -> torch.Tensor:
    """fp16 / bf16 -> fp32; fp32 and float64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def safe_pow(base: torch.Tensor, exponent: float) -> torch.Tensor:
    """``base ** exponent`` for ``base >= 0`` with a zero (not infinite) gradient at ``base = 0``
    when ``exponent < 1``: the focal Tversky losses at a perfect prediction."""
    if exponent >= 1.0:
        return base.clamp_min(0.0).pow(exponent)
    positive = base > 0
    tiny = torch.finfo(base.dtype).tiny
    return torch.where(positive, torch.where(positive, base, 1.0).clamp_min(tiny).pow(exponent), 0.0)
