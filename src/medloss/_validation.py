"""Input validation shared by every loss, metric and calibrator.

Every check raises :class:`ValueError` or :class:`TypeError` with a message that names the
argument and shows what was expected and what was received, so a wrong input never turns
into a silent number.  Checks that need to look at tensor values (label ranges, probability
ranges) cost one cheap reduction; nothing here copies the input.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from numbers import Real
from typing import Any

import numpy as np
import torch

REDUCTIONS = ("mean", "sum", "none")

_value_checks = os.environ.get("MEDLOSS_VALUE_CHECKS", "1").strip().lower() not in ("0", "false", "no", "off")


def value_checks_active(*tensors: torch.Tensor) -> bool:
    """Whether checks that read tensor values (label ranges, probability ranges, finiteness) run now
    on ``tensors``.

    They run in eager mode unless turned off with :func:`value_checks` (or the environment variable
    ``MEDLOSS_VALUE_CHECKS=0``). Under ``torch.compile`` they are skipped: each needs the data on
    the host, which would break the graph. Tensors on the ``meta`` device have no values to check
    (shape inference): skipped too. Shape, dtype and argument checks always run.
    """
    if any(t.device.type == "meta" for t in tensors):
        return False
    return _value_checks and not torch.compiler.is_compiling()


@contextmanager
def value_checks(enabled: bool) -> Iterator[None]:
    """Turn the value checks of every loss and metric on or off inside a ``with`` block.

    Off, a training step makes no host round trip for validation (like torchmetrics'
    ``validate_args=False``); bad labels then count nowhere and non-finite logits give a NaN loss,
    as in PyTorch's own losses.

    **Under** ``torch.compile`` **the value checks are always off**, whatever this says: a compiled
    loss does not raise for an out-of-range label (it counts nowhere) or a non-finite logit (the
    loss is NaN). Run a step eagerly (or validate your data loader) to catch such data; shape, dtype
    and argument checks run in both modes. For example::

        with medloss.value_checks(False):
            loss = criterion(logits, target)

    Args:
        enabled: run the value checks inside the block (True, the default outside any block) or not.

    Returns:
        A context manager; the previous setting is restored on leaving the block.

    Raises:
        Nothing itself; inside the block with ``enabled=True`` the losses raise as usual.

    Examples:
        >>> import medloss
        >>> from medloss.losses import DiceLoss
        >>> with medloss.value_checks(False):  # no host round trip: a bad label counts nowhere instead of raising
        ...     DiceLoss(include_background=False)(torch.zeros(1, 2, 2), torch.tensor([[1, 7]]))
        tensor(0.3333)
    """
    global _value_checks
    previous = _value_checks
    _value_checks = bool(enabled)
    try:
        yield
    finally:
        _value_checks = previous
MODES = ("binary", "multiclass", "multilabel")


def plain(value: Any) -> Any:
    """A NumPy scalar as the Python number it holds, for messages (``2.5``, not ``np.float64(2.5)``)."""
    return value.item() if type(value).__module__ == "numpy" and hasattr(value, "item") else value


def fmt_shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def as_tensor(x: Any, name: str, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Return ``x`` as a tensor (NumPy arrays and nested lists are converted, tensors pass through)."""
    if isinstance(x, torch.Tensor):
        return x if dtype is None else x.to(dtype)
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":  # strings, objects, dates, complex: torch's own error names no argument
            hint = ""
            if x.dtype.kind in "USO":
                hint = " (map labels to integers first, e.g. np.unique(x, return_inverse=True))"
            raise TypeError(f"`{name}` must be a numeric array, got a NumPy array of dtype {x.dtype}{hint}")
        if not x.flags.writeable:  # pandas' .values / .to_numpy() may be read-only: torch would warn
            x = np.array(x)
        return torch.from_numpy(np.ascontiguousarray(x)) if dtype is None else torch.as_tensor(x, dtype=dtype)
    if isinstance(x, (list, tuple)):
        try:
            return torch.as_tensor(x, dtype=dtype)
        except (TypeError, ValueError) as err:
            raise TypeError(f"`{name}` must be a tensor, array or list of numbers: {err}") from None
    raise TypeError(f"`{name}` must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    choices = tuple(choices)
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {allowed}; got {plain(value)!r}")
    return value


def check_reduction(reduction: str) -> str:
    return check_choice(reduction, "reduction", REDUCTIONS)


def check_mode(mode: str) -> str:
    return check_choice(mode, "mode", MODES)


def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Check a scalar hyper-parameter lies in an interval; returns it as ``float``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"`{name}` must be a real number, got {type(value).__name__} ({plain(value)!r})")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"`{name}` must be finite, got {v}")
    lo_ok = low is None or (v >= low if low_inclusive else v > low)
    hi_ok = high is None or (v <= high if high_inclusive else v < high)
    if not (lo_ok and hi_ok):
        lb = "-inf" if low is None else f"{low:g}"
        hb = "inf" if high is None else f"{high:g}"
        interval = ("[" if low_inclusive and low is not None else "(") + f"{lb}, {hb}"
        interval += "]" if high_inclusive and high is not None else ")"
        raise ValueError(f"`{name}` must lie in {interval}; got {v:g}")
    return v


def check_int(value: Any, name: str, *, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer, got {type(value).__name__} ({plain(value)!r})")
    if low is not None and value < low:
        raise ValueError(f"`{name}` must be >= {low}; got {value}")
    return int(value)


def check_float_tensor(x: torch.Tensor, name: str) -> torch.Tensor:
    if not torch.is_floating_point(x):
        raise TypeError(f"`{name}` must be a floating-point tensor (logits or probabilities), got dtype {x.dtype}")
    return x


def check_not_empty(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.numel() == 0:
        raise ValueError(f"`{name}` is empty (shape {fmt_shape(x.shape)}); expected at least one element")
    return x


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """NaN / Inf anywhere in ``x`` is an error naming ``name``.

    The sum is finite whenever every value is (40x cheaper than ``isfinite(x).all()`` on CPU); only
    a non-finite sum (which may also be an overflow of huge finite values) is looked at closely.
    """
    if not torch.is_floating_point(x) or x.numel() == 0 or not value_checks_active(x):
        return x
    if bool(torch.isfinite(x.detach().sum())):
        return x
    if not bool(torch.isfinite(x).all()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise ValueError(f"`{name}` contains non-finite values ({n_nan} NaN, {n_inf} Inf)")
    return x


def check_probabilities(x: torch.Tensor, name: str) -> torch.Tensor:
    """Probabilities must be finite and lie in [0, 1]."""
    if not value_checks_active(x):
        return x
    check_finite(x, name)
    lo, hi = torch.aminmax(x.detach())
    if lo < 0 or hi > 1:
        raise ValueError(
            f"`{name}` must hold probabilities in [0, 1] (from_logits=False); got values in "
            f"[{float(lo):.4g}, {float(hi):.4g}]. Pass logits with from_logits=True instead."
        )
    return x


def _range_and_ignored(t: torch.Tensor, ignore_index: int | None) -> tuple[float, float, torch.Tensor | None]:
    """(min, max) of the non-ignored values and the mask of ignored positions (None if there are none).

    One ``aminmax`` pass in the common case: ``ignore_index`` can only be present if it lies
    within the range of all values.
    """
    t = t.detach()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    lo, hi = (float(v) for v in torch.aminmax(t))
    if ignore_index is None or not (lo <= ignore_index <= hi):
        return lo, hi, None
    ignored = t == ignore_index
    kept = t[~ignored]
    if kept.numel() == 0:
        return 0.0, 0.0, ignored
    lo, hi = (float(v) for v in torch.aminmax(kept))
    return lo, hi, ignored


def _ignored_mask(t: torch.Tensor, ignore_index: int | None) -> torch.Tensor | None:
    """The positions equal to ``ignore_index``, without looking at the data (no checks mode)."""
    return None if ignore_index is None else t.detach() == ignore_index


def check_class_indices(
    target: torch.Tensor, name: str, num_classes: int, ignore_index: int | None = None
) -> torch.Tensor | None:
    """Integer class indices in [0, num_classes), positions equal to ``ignore_index`` excepted.

    Returns the boolean mask of ignored positions, or ``None`` when no position is ignored.
    """
    if torch.is_floating_point(target) or target.dtype == torch.bool or target.is_complex():
        raise TypeError(f"`{name}` must hold integer class indices (e.g. torch.long), got dtype {target.dtype}")
    if target.numel() == 0:
        return None
    if not value_checks_active(target):
        return _ignored_mask(target, ignore_index)
    lo, hi, ignored = _range_and_ignored(target, ignore_index)
    if lo < 0 or hi >= num_classes:
        ignore = "" if ignore_index is None else f" (or ignore_index={ignore_index})"
        raise ValueError(
            f"`{name}` must hold class indices in [0, {num_classes - 1}]{ignore}; "
            f"got values in [{int(lo)}, {int(hi)}]"
        )
    return ignored


def check_op_findings(
    x: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None, n_bad: torch.Tensor,
    logits_sum: torch.Tensor,
) -> None:
    """The eager value checks of ``x`` (logits) and ``target`` from what a fused op found as it read them: its
    count of labels outside ``[0, C)`` and ``ignore_index``, and its sum of the logits (finite whenever every
    logit is). One host read; the exact checks run, and raise naming the argument, only when either finds
    something (a finite sum's overflow passes). The sum's dtype carries both numbers (MPS has no float64)."""
    bad, total = torch.stack([n_bad.to(logits_sum.dtype), logits_sum.detach()]).tolist()
    if not math.isfinite(total):
        check_finite(x, "input")  # raises, counting the NaN and Inf
    if bad:
        check_class_indices(target, "target", num_classes, ignore_index)  # raises, naming the labels found


def check_binary_target(
    target: torch.Tensor, name: str, ignore_index: int | None = None
) -> torch.Tensor | None:
    """Binary / multilabel targets: values in [0, 1] (fractions are soft labels), or ``ignore_index``.

    Returns the boolean mask of ignored positions, or ``None`` when no position is ignored.
    """
    if target.numel() == 0:
        return None
    if not value_checks_active(target):
        return _ignored_mask(target, ignore_index)
    if torch.is_floating_point(target) and not bool(torch.isfinite(target).all()):
        raise ValueError(f"`{name}` contains NaN or Inf")
    lo, hi, ignored = _range_and_ignored(target, ignore_index)
    if lo < 0 or hi > 1:
        ignore = "" if ignore_index is None else f" (or ignore_index={ignore_index})"
        raise ValueError(
            f"`{name}` must hold values in {{0, 1}} or soft labels in [0, 1]{ignore}; "
            f"got values in [{lo:g}, {hi:g}]"
        )
    return ignored


def check_class_vector(
    weight: Any, name: str, num_classes: int | None = None, *, low: float = 0.0, high: float | None = None
) -> torch.Tensor:
    """A 1-D vector of per-class numbers (weights, alphas), validated for length and range."""
    w = as_tensor(weight, name)
    if not torch.is_floating_point(w):
        w = w.to(torch.float32)
    if w.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D tensor with one entry per class; got shape {fmt_shape(w.shape)}")
    if num_classes is not None and w.numel() != num_classes:
        raise ValueError(f"`{name}` must have length {num_classes} (one entry per class); got length {w.numel()}")
    check_finite(w, name)
    if bool((w < low).any()) or (high is not None and bool((w > high).any())):
        hb = "inf)" if high is None else f"{high:g}]"
        raise ValueError(f"`{name}` entries must lie in [{low:g}, {hb}; got {w.tolist()}")
    return w


def canonical_inputs(
    input: torch.Tensor,
    target: torch.Tensor,
    mode: str,
    *,
    ignore_index: int | None = None,
    num_classes: int | None = None,
    check_labels: bool = True,
    check_input_finite: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Validate ``input``/``target`` against ``mode``; return ``(input, target, ignored)``.

    ``check_labels=False`` (multiclass only) checks shapes and dtypes but not the label range, and
    returns ``ignored=None``: for callers whose kernel checks labels as it reads them and falls back
    to a checked call when it finds a bad one. ``check_input_finite=False`` (multiclass only) leaves the
    finiteness of ``input`` to the caller, whose op sums the logits as it reads them.

    Non-finite ``input`` (NaN, +Inf or -Inf anywhere) is an error: one documented policy for every
    loss (README, "Conventions").

    ``input`` and ``target`` come back in canonical shape, ``ignored`` is the boolean mask of
    positions whose target equals ``ignore_index`` (shaped as the returned target), or ``None``
    when there are none.

    - ``binary``: input ``[B, 1, *]`` or ``[B, *]`` and a target of the same shape, give or take
      the channel dim of size 1 (``[B, *]`` vs ``[B, 1, *]``); returned as input ``[B, 1, *]`` and
      float target ``[B, 1, *]``.
    - ``multiclass``: input ``[B, C, *]`` (C >= 2), integer target ``[B, *]`` (``[B, 1, *]`` accepted).
    - ``multilabel``: input ``[B, C, *]`` and target ``[B, C, *]`` in {0, 1}.

    ``*`` is zero to three spatial dimensions.
    """
    check_mode(mode)
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"`input` must be a torch.Tensor, got {type(input).__name__}")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"`target` must be a torch.Tensor, got {type(target).__name__}")
    check_float_tensor(input, "input")
    check_not_empty(input, "input")
    if input.device != target.device:
        raise ValueError(f"`input` is on {input.device} but `target` is on {target.device}")

    if mode == "binary":
        return _binary_inputs(input, target, ignore_index)
    if input.ndim < 2 or input.ndim > 5:
        raise ValueError(f"{mode} `input` must be [B, C, *] with 0-3 spatial dims; got {fmt_shape(input.shape)}")
    if num_classes is not None and input.shape[1] != num_classes:
        raise ValueError(f"`input` has {input.shape[1]} channels but num_classes={num_classes}")
    if mode == "multiclass":
        return _multiclass_inputs(input, target, ignore_index, check_labels, check_input_finite)
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(
            f"multilabel `target` must have the input's shape {fmt_shape(input.shape)}; "
            f"got {fmt_shape(target.shape)}"
        )
    check_finite(input, "input")
    return input, target, check_binary_target(target, "target", ignore_index)


def _binary_inputs(input: torch.Tensor, target: torch.Tensor,
                   ignore_index: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Binary mode of :func:`canonical_inputs`: input ``[B, 1, *]`` and a float target of that shape."""
    if input.ndim < 1 or input.ndim > 5:
        raise ValueError(f"binary `input` must be [B], [B, 1, *] or [B, *]; got {fmt_shape(input.shape)}")
    # only a channel dim of size 1 may be added or dropped: a target with the same number of
    # elements in another layout (a transposed mask, [8] vs [4, 2]) is an error, not a reshape
    x = input if input.ndim >= 2 and input.shape[1] == 1 else input.unsqueeze(1)
    if tuple(target.shape) not in (tuple(x.shape), tuple(x.shape[:1] + x.shape[2:])):
        raise ValueError(
            f"binary `target` shape {fmt_shape(target.shape)} does not match input {fmt_shape(input.shape)}; "
            "expected the same shape, or the same shape with a channel dim of size 1 added or removed "
            "([B, *] vs [B, 1, *])"
        )
    check_finite(input, "input")
    ignored = check_binary_target(target, "target", ignore_index)
    return x, target.reshape(x.shape), None if ignored is None else ignored.reshape(x.shape)


def _multiclass_inputs(input: torch.Tensor, target: torch.Tensor, ignore_index: int | None, check_labels: bool,
                       check_input_finite: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Multiclass mode of :func:`canonical_inputs`: input ``[B, C, *]`` (C >= 2), integer target ``[B, *]``."""
    if input.shape[1] < 2:
        raise ValueError(
            f"multiclass `input` needs C >= 2 channels, got {fmt_shape(input.shape)}; "
            "use mode='binary' for a single logit"
        )
    expected = (input.shape[0], *input.shape[2:])
    t = target
    if t.ndim == input.ndim and t.shape[1] == 1:
        t = t.squeeze(1)
    if tuple(t.shape) != expected:
        raise ValueError(
            f"multiclass `target` must be class indices of shape {fmt_shape(expected)} for input "
            f"{fmt_shape(input.shape)}; got {fmt_shape(target.shape)}"
        )
    if check_input_finite:
        check_finite(input, "input")
    if not check_labels:
        if torch.is_floating_point(t) or t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"`target` must hold integer class indices (e.g. torch.long), got dtype {t.dtype}")
        return input, t, None
    return input, t, check_class_indices(t, "target", input.shape[1], ignore_index)


def check_simplex(p: torch.Tensor, name: str, dim: int = 1, atol: float = 1e-3) -> torch.Tensor:
    """Probabilities along ``dim`` must lie in [0, 1] and sum to one (within ``atol``)."""
    if not value_checks_active(p):
        return p
    check_probabilities(p, name)
    total = p.detach().sum(dim, dtype=torch.float64)
    err = float((total - 1.0).abs().max()) if total.numel() else 0.0
    if err > atol:
        raise ValueError(
            f"`{name}` must hold probabilities that sum to 1 over dim {dim}; the largest deviation is {err:.3g}. "
            "Pass logits instead, or normalise the probabilities."
        )
    return p
