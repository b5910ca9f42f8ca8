"""Machinery of the ops' PyTorch implementations: labels and their one-hot, the focal term's value and
slope, Combo's weighted cross-entropy gradient. Plain tensor operations on the input's device: no host
read, no branch on a value (what a GPU without Triton, MPS, and the CPU without the C kernel run)."""

from __future__ import annotations

import torch
from torch import Tensor

#: label byte of a position that counts nowhere (the C kernel's LABEL_SKIP)
LABEL_SKIP = 255


def check_logits(x: Tensor, target: Tensor, name: str) -> None:
    """Shape and dtype checks at an op's boundary (cheap, no data read)."""
    torch._check(x.dim() >= 2, lambda: f"{name}: logits must be [B, C, *], got {x.dim()} dims")
    torch._check(x.is_floating_point(), lambda: f"{name}: logits must be floating point, got {x.dtype}")
    torch._check(
        target.shape == (x.shape[0], *x.shape[2:]),
        lambda: f"{name}: target must be [B, *] = {[x.shape[0], *x.shape[2:]]}, got {list(target.shape)}",
    )
    torch._check(not target.is_floating_point(), lambda: f"{name}: target must hold integer labels")


def n_positions(x: Tensor) -> int:
    """Positions per image of logits ``[B, C, *]`` (metadata only)."""
    n = 1
    for size in x.shape[2:]:
        n *= size
    return n


def compact_labels(t: Tensor, n_classes: int, ignore_index: int | None) -> Tensor:
    """Labels ``[B, N]`` as bytes with ``LABEL_SKIP`` wherever nothing counts (``ignore_index`` and labels
    outside ``[0, C)``), what a backward reads instead of int64 targets (8x fewer bytes); ``[B, 0]`` from
    255 classes up (the backward then reads the target)."""
    if n_classes >= LABEL_SKIP:
        return t.new_empty(t.shape[0], 0, dtype=torch.uint8)
    labels8 = t.clamp(-1, n_classes).to(torch.uint8)  # -1 -> 255; everything >= C -> C
    labels8 = labels8.masked_fill(labels8 == n_classes, LABEL_SKIP)
    if ignore_index is not None and 0 <= ignore_index < n_classes:
        labels8 = labels8.masked_fill(t == ignore_index, LABEL_SKIP)
    return labels8


def onehot_and_valid(labels: Tensor, n_classes: int, ignore_index: int | None,
                     dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``(onehot [B, C, N], counted [B, N])`` in ``dtype`` of labels ``[B, N]`` (int targets or the bytes of
    :func:`compact_labels`), zero where nothing counts: ``ignore_index`` and any label outside ``[0, C)``
    (a comparison with each class index matches none of them, so nothing needs clamping)."""
    if ignore_index is not None and 0 <= ignore_index < n_classes and labels.dtype != torch.uint8:
        labels = labels.masked_fill(labels == ignore_index, -1)
    classes = torch.arange(n_classes, device=labels.device, dtype=labels.dtype).view(1, -1, 1)
    onehot = (classes == labels.unsqueeze(1)).to(dtype)
    return onehot, onehot.sum(1)


def count_bad(t: Tensor, counted: Tensor, ignore_index: int | None) -> Tensor:
    """Labels that are neither in ``[0, C)`` nor ``ignore_index`` (0-dim int64, no host read)."""
    bad = (counted == 0).sum()
    if ignore_index is not None:
        bad = bad - (t == ignore_index).sum()
    return bad


def class_weight_at(weight: Tensor | None, onehot: Tensor, counted: Tensor) -> Tensor:
    """``w_t`` at each position ``[B, N]`` (1 without weights), 0 where nothing counts."""
    if weight is None:
        return counted
    return (onehot * weight.to(onehot).view(1, -1, 1)).sum(1)


def focal_modulator(logp: Tensor, gamma: float, *, p: Tensor | None = None) -> Tensor:
    """``(1 - p)^gamma`` (``gamma > 0``) from ``l = log p`` (<= 0): ``1 - p`` from ``-expm1(l)``, exact near
    ``p = 1``; from ``p`` itself when the caller has it (as exact for the same ``p``). A fresh tensor."""
    one_minus_p = torch.expm1(logp).neg_() if p is None else torch.rsub(p, 1.0)
    if gamma == 1.0:
        return one_minus_p
    return one_minus_p.square_() if gamma == 2.0 else one_minus_p.pow_(gamma)


def focal_value(logp: Tensor, gamma: float, *, p: Tensor | None = None) -> Tensor:
    """``-(1 - p)^gamma log p`` from ``l = log p``, the value half of :func:`focal_terms`."""
    if gamma == 0.0:
        return -logp
    return focal_modulator(logp, gamma, p=p).mul_(logp).neg_()


def focal_terms(
    logp: Tensor, gamma: float, *, value: bool = True, p: Tensor | None = None
) -> tuple[Tensor | None, Tensor]:
    """Focal term and its slope, from log-probabilities ``l = log p`` (<= 0).

    Returns ``value = -(1 - p)^gamma * l`` and ``slope = -d value / d l
    = (1 - p)^gamma * (1 - gamma * p * l / (1 - p))``.

    ``1 - p`` comes from ``-expm1(l)`` and the ratio ``l / (1 - p)`` is kept finite near ``p = 1``, so both
    stay finite for every gamma >= 0 at confident correct predictions, where the naive ``(1 - p) ** gamma``
    has an infinite derivative (gamma < 1). ``slope >= 0`` everywhere. ``value=False``: the slope alone (a
    backward pass), value None. ``p``: the probabilities themselves when the caller has them (``logp`` then
    being their log; ``p`` is not modified).
    """
    if gamma == 0.0:
        return (-logp if value else None), torch.ones_like(logp)
    if p is None:
        one_minus_p = torch.expm1(logp).neg_()
        p = torch.exp(logp)  # not 1 - (1 - p): that loses the small p of confident negatives in fp32
    else:
        one_minus_p = torch.rsub(p, 1.0)
        p = p.clone()  # modified in place below
    if gamma >= 1.0:
        # (1 - p)^(gamma - 1) is bounded here: slope = (1-p)^g - g p (1-p)^(g-1) log p
        mod_m1 = None if gamma == 1.0 else (one_minus_p if gamma == 2.0 else one_minus_p.pow(gamma - 1.0))
        modulator = one_minus_p if mod_m1 is None else one_minus_p * mod_m1
        correction = p.mul_(logp).mul_(gamma)
        if mod_m1 is not None:
            correction.mul_(mod_m1)
        return ((modulator * logp).neg_() if value else None), modulator - correction
    # gamma < 1: (1 - p)^(gamma - 1) is unbounded as p -> 1; use the ratio log p / (1 - p), which tends to
    # -1 (expm1 keeps 1 - p exact for tiny |log p|). At p = 1 exactly the modulator is 0, so the floored
    # ratio there does not matter.
    modulator = one_minus_p.pow(gamma)
    ratio = logp / one_minus_p.clamp_min_(torch.finfo(logp.dtype).tiny)
    v = (modulator * logp).neg_() if value else None
    slope = p.mul_(ratio).mul_(-gamma).add_(1.0).mul_(modulator)
    return v, slope


def focal_by_class(lt: Tensor, labels_bg: Tensor, gamma_bg: float, gamma_fg: float, *, slope: bool) -> Tensor:
    """The focal value of ``log p_t`` ``[B, N]`` (a forward), or with ``slope`` its slope alone (a backward), with
    ``gamma_bg`` where the target is class 0 (``labels_bg`` ``[B, N]``, nonzero there) and ``gamma_fg`` elsewhere."""
    def one(gamma: float) -> Tensor:
        return focal_terms(lt, gamma, value=False)[1] if slope else focal_value(lt, gamma)

    if gamma_bg == gamma_fg:
        return one(gamma_fg)
    return torch.where(labels_bg != 0, one(gamma_bg), one(gamma_fg))


def smoothed_target(onehot: Tensor, counted: Tensor, weight: Tensor | None, eps: float) -> Tensor:
    """``q_c w_c`` ``[B, C, N]``: PyTorch's label smoothing (``eps / C`` on every class, ``1 - eps`` more on
    the target), weighted per class; 0 where nothing counts."""
    n_classes = onehot.shape[1]
    q = (onehot * (1.0 - eps)).add_(counted.unsqueeze(1) * (eps / n_classes))
    return q if weight is None else q.mul_(weight.to(q).view(1, -1, 1))


def weighted_ce_value(x: Tensor, logp: Tensor, p: Tensor, onehot: Tensor, beta: float) -> Tensor:
    """Combo's weighted cross-entropy at each pixel ``[B, N]``, ``-(beta log p_t + (1 - beta) sum_{c != t}
    log(1 - p_c))``, of logits ``x`` ``[B, C, N]`` (``logp``, ``p``: their log-softmax and softmax), exact for
    any logit (see :func:`weighted_ce_gradient`)."""
    big_f, log_big, _ = _confident_class(x, p)
    log_q = torch.log1p(-p * (1.0 - big_f)).add_(big_f * log_big)
    return -(beta * (logp * onehot).sum(1) + (1.0 - beta) * (log_q * (1.0 - onehot)).sum(1))


def weighted_ce_gradient(x: Tensor, p: Tensor, onehot: Tensor, beta: float) -> Tensor:
    """The gradient ``[B, C, N]`` of :func:`weighted_ce_value` with respect to the logits.

    With ``r_c = p_c / (1 - p_c)``, ``d log(1 - p_c) / dx_j = r_c (p_j - [j = c])``. At most one class per
    pixel has ``p > 1/2`` (the "big" one); there ``r`` may overflow, so its terms are rewritten without it
    (``p_j r_big = p_big softmax_others_j``, ``(p_big - 1) r_big = -p_big``), with the softmax of the other
    classes taken from the logits: finite and exact for every logit."""
    not_t = 1.0 - onehot
    big_f, _, softmax_others = _confident_class(x, p)
    small_p = p * (1.0 - big_f)
    r = small_p / (1.0 - small_p)
    r_rest = (r * not_t).sum(1, keepdim=True)
    p_big = (p * big_f).sum(1, keepdim=True)
    big_not_t = (big_f * not_t).sum(1, keepdim=True)  # 1 where a confident class is not the target
    g = p * r_rest + big_not_t * p_big * (softmax_others - big_f) - r * not_t
    return (p - onehot).mul_(beta).sub_(g.mul_(1.0 - beta))


def _confident_class(x: Tensor, p: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(big [B, C, N], log(1 - p_big) [B, 1, N], softmax_others [B, C, N])``: the flag of the class with
    ``p > 1/2`` (at most one per pixel), ``log(1 - p_big)`` as the log-sum-exp of the other classes' logits
    minus that of all, and the softmax over the other classes (0 at the big one). From the logits, whose
    differences are exact: log-probabilities near -2e4 carry an absolute rounding of 1e-3 in fp32."""
    big_f = (p > 0.5).to(p.dtype)
    top = (x - big_f * 1e30).amax(1, keepdim=True).detach()  # the largest logit but the big one's
    others = torch.exp((x - top).clamp_(max=0.0)).mul_(1.0 - big_f)
    total = others.sum(1, keepdim=True)
    log_big = total.log().add_(top).sub_(torch.logsumexp(x, 1, keepdim=True))
    return big_f, log_big, others.div_(total)
