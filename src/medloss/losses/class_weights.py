"""Per-class weights from label counts."""

from __future__ import annotations

import math
from typing import Any

import torch

from .._validation import as_tensor, check_choice, check_class_indices, check_int, check_number

SCHEMES = ("balanced", "inverse", "effective_number")
ABSENT = ("error", "zero")


def class_weights(
    targets: Any,
    num_classes: int,
    scheme: str = "balanced",
    *,
    beta: float = 0.999,
    absent: str = "error",
    ignore_index: int | None = -100,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""Per-class weights from the labels of the *whole training set* (not a batch).

    With ``n_c`` samples of class ``c`` among ``N`` and ``K = num_classes``:

    - ``"balanced"``: ``w_c = N / (K n_c)``, exactly scikit-learn's
      ``compute_class_weight("balanced")``.
    - ``"inverse"``: ``w_c`` proportional to ``1 / n_c``, scaled so the weights sum to ``K``.
    - ``"effective_number"`` (Cui et al., "Class-Balanced Loss Based on Effective Number of
      Samples", CVPR 2019): ``w_c`` proportional to ``(1 - beta) / (1 - beta^{n_c})``, scaled so
      the weights sum to ``K``. ``beta -> 0`` gives uniform weights, ``beta -> 1`` inverse frequency.

    A class with no sample would get an infinite weight. ``absent="error"`` (default) raises and
    names the classes; ``absent="zero"`` gives them weight 0 (finite; such a class never appears in
    the targets the weights were computed from) and scales the others as if they were absent.

    Args:
        targets: integer labels (tensor, array or list); ``ignore_index`` entries are skipped.
        num_classes: number of classes ``K`` (>= 2); every class in ``0..K-1`` gets a weight.
        scheme: ``"balanced"`` (default), ``"inverse"`` or ``"effective_number"``.
        beta: for ``"effective_number"``, in [0, 1) (default 0.999).
        absent: ``"error"`` (default) or ``"zero"``.
        ignore_index: label value to skip (default -100; ``None`` to count everything).
        dtype: of the returned tensor (default float32).

    Returns:
        A 1-D tensor of length ``num_classes``, usable as ``weight`` of :class:`FocalLoss`, of the region
        losses or of ``nn.CrossEntropyLoss``.

    Raises:
        ValueError: a class with no sample (``absent="error"``), labels outside ``[0, K)`` other than
            ``ignore_index``, an unknown ``scheme`` or ``absent``, ``beta`` outside [0, 1), ``num_classes`` < 2.
        TypeError: non-integer labels.

    Examples:
        >>> class_weights(torch.tensor([0, 0, 0, 1]), num_classes=2)  # N / (K n_c) = 4 / (2 * 3), 4 / (2 * 1)
        tensor([0.6667, 2.0000])
    """
    num_classes = check_int(num_classes, "num_classes", low=2)
    check_choice(scheme, "scheme", SCHEMES)
    check_choice(absent, "absent", ABSENT)
    beta = check_number(beta, "beta", low=0.0, high=1.0, high_inclusive=False)
    t = as_tensor(targets, "targets").reshape(-1)
    if t.dtype == torch.bool or torch.is_floating_point(t):
        if torch.is_floating_point(t) and bool((t == t.round()).all()):
            t = t.long()
        else:
            raise TypeError(f"`targets` must hold integer class labels, got dtype {t.dtype}")
    check_class_indices(t, "targets", num_classes, ignore_index)
    if ignore_index is not None:
        t = t[t != ignore_index]
    if t.numel() == 0:
        raise ValueError("`targets` is empty: class weights need at least one label")
    counts = torch.bincount(t.long().cpu(), minlength=num_classes).to(torch.float64)
    present = counts > 0
    if not bool(present.all()):
        missing = torch.nonzero(~present).flatten().tolist()
        if absent == "error":
            raise ValueError(
                f"`targets` has no sample of class(es) {missing} out of num_classes={num_classes}: their weight "
                "would be infinite. Compute weights from the whole training set, or pass absent='zero'."
            )
    k_present = float(present.sum())
    w = torch.zeros(num_classes, dtype=torch.float64)
    n = counts[present]
    if scheme == "balanced":
        w[present] = counts.sum() / (k_present * n)
    else:
        if scheme == "inverse":
            raw = 1.0 / n
        elif beta == 0.0:  # every class has effective number 1
            raw = torch.ones_like(n)
        else:  # 1 - beta^n through expm1 keeps its precision for beta close to 1
            raw = (1.0 - beta) / -torch.expm1(n * math.log(beta))
        w[present] = raw * (k_present / raw.sum())
    return w.to(dtype)
