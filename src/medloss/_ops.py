"""medloss's fused computations as PyTorch custom operators (``torch.ops.medloss.*``).

Each op is registered with :mod:`torch.library`, so the dispatcher, autograd, ``torch.compile``
(dynamo / AOTAutograd / inductor) and FakeTensor see it as one opaque, shape-known operation:

- a fake (meta) implementation: output shapes from input shapes, no data;
- a PyTorch-operations implementation used on every device (CUDA, MPS, ...);
- a CPU implementation that runs the compiled C kernel (``_kernels.c``) when it is installed,
  enabled and eligible (float32 / float64, 2-32 classes), and the PyTorch operations otherwise.
  This is the one place where that choice is made;
- a backward registered with ``register_autograd`` that is itself an op and recomputes the
  softmax / sigmoid from the saved logits (nothing logits-sized is stored by the forward beyond
  one byte of label per pixel), except ``softmax_stats`` and ``softmax_focal`` (images) on the
  PyTorch path, which keep the softmax instead (``keep_softmax``: one logits-sized tensor, and the
  labels in half bytes below 15 classes; recomputing it costs as much as the rest of that
  backward). On the CPU that path works through the batch in cache-sized blocks of images. When
  autograd must differentiate the backward once more (``create_graph=True``) the gradient comes
  from the defining formula in plain PyTorch operations instead
  (:func:`medloss.losses._common.second_order_grads`).

Data never drives Python control flow outside the implementations (which run eagerly even inside
a compiled graph), and nothing here moves a device tensor to the host.

Labels that are neither in ``[0, C)`` nor ``ignore_index`` count nowhere inside the ops; each op
returns how many there were (``n_bad``), and the losses turn a nonzero count into a clear error
in eager mode.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _native

#: kinds of per-pixel term computed with the softmax statistics
TERM_NONE, TERM_FOCAL, TERM_WCE = _native.TERM_NONE, _native.TERM_FOCAL, _native.TERM_WCE
#: label byte of a pixel that counts nowhere (the kernel's LABEL_SKIP)
LABEL_SKIP = 255


# --------------------------------------------------------------------------------------- helpers
def _compact_labels(t: Tensor, n_classes: int, ignore_index: int | None) -> Tensor:
    """Labels ``[B, N]`` as bytes with ``LABEL_SKIP`` wherever nothing is counted (``ignore_index``
    and labels outside ``[0, C)``), for ``C < 255``: 8x less to read than int64 labels."""
    labels8 = t.clamp(-1, n_classes).to(torch.uint8)  # -1 -> 255; everything >= C -> C
    labels8.masked_fill_(labels8 == n_classes, LABEL_SKIP)
    if ignore_index is not None and 0 <= ignore_index < n_classes:
        labels8.masked_fill_(t == ignore_index, LABEL_SKIP)
    return labels8


def _onehot(labels: Tensor, n_classes: int, ignore_index: int | None, dtype: torch.dtype, *,
            valid: bool = True, out: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """``(onehot, valid)`` of labels ``[B, N]``: ``[B, C, N]`` and ``[B, N]`` in ``dtype``, zero at
    positions that count nowhere (``ignore_index``, or any label outside ``[0, C)``: a comparison
    with each class index matches none of them, so no label needs clamping before a gather).
    ``valid=False``: byte labels known to count everywhere need no mask (None). ``out``: where to write the
    one-hot of byte labels (``[B, C, N]`` in ``dtype``), else a fresh tensor.

    Byte labels (:func:`_compact_labels`, :func:`_unpack_nibbles`: any value from ``C`` up counts nowhere)
    are compared class by class straight into the float output (3-5x faster on CPU than a broadcast
    comparison and a conversion)."""
    if labels.dtype == torch.uint8:
        onehot = out if out is not None else torch.empty(
            labels.shape[0], n_classes, labels.shape[1], dtype=dtype, device=labels.device
        )
        for c, column in enumerate(onehot.unbind(1)):
            torch.eq(labels, c, out=column)
        if not valid:
            return onehot, None
        mask = torch.empty(labels.shape, dtype=dtype, device=labels.device)
        return onehot, torch.lt(labels, n_classes, out=mask)  # one pass over the bytes
    if ignore_index is not None and 0 <= ignore_index < n_classes:
        labels = labels.masked_fill(labels == ignore_index, -1)
    classes = torch.arange(n_classes, device=labels.device, dtype=labels.dtype).view(1, -1, 1)
    onehot = (classes == labels.unsqueeze(1)).to(dtype)
    return onehot, onehot.sum(1)


def _labels_onehot(
    t: Tensor, n_classes: int, ignore_index: int | None, dtype: torch.dtype, *, count_bad: bool = True,
    lazy_valid: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(labels8, onehot, valid, n_bad)`` of a user's target ``[B, N]`` (``labels8`` is ``[B, 0]`` for
    >= 255 classes; ``n_bad`` None unless ``count_bad``). ``lazy_valid``: ``valid`` is None when the
    labels' range shows that every position counts (the CPU; no mask to build or apply)."""
    if n_classes >= LABEL_SKIP:
        onehot, vf = _onehot(t, n_classes, ignore_index, dtype)
        n_bad = _n_bad(t, vf, ignore_index) if count_bad else None
        return torch.empty(t.shape[0], 0, dtype=torch.uint8, device=t.device), onehot, vf, n_bad
    n_bad = None
    if t.device.type == "cpu" and t.numel():
        # on the CPU the data may steer: every label in range (the common case) needs no masking
        lo, hi = (int(v) for v in torch.aminmax(t))
        if lo >= 0 and hi < n_classes:
            labels8 = t.to(torch.uint8)
            ignoring = ignore_index is not None and 0 <= ignore_index < n_classes
            if ignoring:
                labels8.masked_fill_(t == ignore_index, LABEL_SKIP)
            n_bad = t.new_zeros((), dtype=torch.int64) if count_bad else None
            if lazy_valid and not ignoring:
                return labels8, _onehot(labels8, n_classes, None, dtype, valid=False)[0], None, n_bad
        else:
            labels8 = _compact_labels(t, n_classes, ignore_index)
    else:
        labels8 = _compact_labels(t, n_classes, ignore_index)
    onehot, vf = _onehot(labels8, n_classes, None, dtype)
    if count_bad and n_bad is None:
        n_bad = _n_bad(t, vf, ignore_index)
    return labels8, onehot, vf, n_bad


def _n_bad(t: Tensor, valid: Tensor, ignore_index: int | None) -> Tensor:
    """Labels that are neither in ``[0, C)`` nor ``ignore_index``, counted without a host sync."""
    bad = (valid == 0).sum()  # int64 counts: no float64, which MPS lacks
    if ignore_index is not None:
        bad = bad - (t == ignore_index).sum()
    return bad


#: with fewer classes than this, the labels fit in half a byte (class indices 0-14 and ``NIBBLE_SKIP``)
NIBBLE_SKIP = 15


def _pack_nibbles(labels8: Tensor) -> Tensor:
    """Byte labels ``[B, N]`` (values below ``NIBBLE_SKIP``, or ``LABEL_SKIP``) as half bytes
    ``[B, ceil(N / 2)]``: the first half of each row in the low nibbles, the second in the high ones
    (two contiguous passes to undo), ``LABEL_SKIP`` becoming ``NIBBLE_SKIP``."""
    n = labels8.shape[-1]
    h = n - n // 2
    packed = labels8.narrow(-1, 0, h).bitwise_and(NIBBLE_SKIP)
    packed.narrow(-1, 0, n - h).bitwise_or_(labels8.narrow(-1, h, n - h).bitwise_left_shift(4))
    return packed


def _unpack_nibbles(packed: Tensor, n: int) -> Tensor:
    """The byte labels ``[B, n]`` of :func:`_pack_nibbles` (``NIBBLE_SKIP`` where nothing counts)."""
    h = n - n // 2
    labels8 = packed.new_empty(packed.shape[0], n)
    torch.bitwise_and(packed, NIBBLE_SKIP, out=labels8.narrow(-1, 0, h))
    torch.bitwise_right_shift(packed.narrow(-1, 0, n - h), 4, out=labels8.narrow(-1, h, n - h))
    return labels8


#: up to this many classes, per-channel sums run as a loop over [B, N] slices: on CPU a broadcast
#: over the channel dim and its [B, C, N] temporary cost 2-4x more than C slice operations
_LOOP_CLASSES = 32


def _channel_dot(a: Tensor, w: Tensor) -> Tensor:
    """``sum_c a[:, c] * w_c`` ``[B, N]`` for ``a`` ``[B, C, N]`` and ``w`` of shape ``[B, C, N]``,
    ``[B, C]`` (per image and class) or ``[C]`` (per class), on ``w``'s device without a host read."""
    n_classes = a.shape[1]
    if n_classes > _LOOP_CLASSES:
        wb = w if w.dim() == 3 else (w.unsqueeze(-1) if w.dim() == 2 else w.view(1, -1, 1))
        return (a * wb).sum(1)

    # the slices as views in one call each (a select per class costs a Python round trip apiece)
    ws = w.unbind(1) if w.dim() == 3 else (w.unsqueeze(-1).unbind(1) if w.dim() == 2 else w.unbind(0))
    slices = a.unbind(1)
    out = slices[0] * ws[0]
    for i in range(1, n_classes):
        out.addcmul_(slices[i], ws[i])
    return out


def _masked_class_sums(a: Tensor, m: Tensor) -> Tensor:
    """``sum_n a[:, c, n] m[:, n]`` ``[B, C]`` (``m`` ``[B, N]``), slice by slice."""
    if a.shape[1] > _LOOP_CLASSES:
        return (a * m.unsqueeze(1)).sum(-1)
    return torch.stack([(ai * m).sum(-1) for ai in a.unbind(1)], 1)


def _log_pt(xv: Tensor, p: Tensor, onehot: Tensor, vf: Tensor | None) -> Tensor:
    """``log p_t`` ``[B, N]``, exact for any logit: ``x_t - max_c x_c - log Z`` with the softmax
    normaliser ``Z = 1 / max_c p_c`` (``max p >= 1 / C`` never underflows). 0 where nothing is counted
    (``vf`` None: everything counts)."""
    shift = xv.amax(1).sub_(p.amax(1).log_())  # torch 2.13's strided amax beats a loop over slices
    lt = _channel_dot(xv, onehot).sub_(shift)
    return (lt if vf is None else lt.mul_(vf)).clamp_(max=0.0)


def _log_p_target(xv: Tensor, p: Tensor, onehot: Tensor | None, vf: Tensor, every: bool,
                  on_target: Tensor | None = None, labels8: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """``log p_t`` ``[B, N]`` (0 where nothing is counted) for the forward's focal value, and the
    ``p_t`` it is the log of (1 where nothing is counted), or None when it came from the logits.
    ``on_target``: ``p * onehot`` when the caller has it (``p_t`` is then its sum over classes; the
    one-hot may then be None, made again from the byte labels ``labels8`` if the logits are needed).

    On the CPU, ``log`` of the softmax at the target when every counted ``p_t`` is a normal float
    (one host read of the minimum): as exact as :func:`_log_pt` there, and two passes over the
    logits fewer (this path is bound by memory traffic). Otherwise, and on accelerators (no host
    read), :func:`_log_pt` from the logits, exact for any logit."""
    if p.device.type == "cpu" and p.numel():
        q = _counted_p_target(_channel_dot(p, onehot) if on_target is None else on_target.sum(1), vf, every)
        if float(q.min()) >= torch.finfo(q.dtype).tiny:
            return torch.log(q), q
    if onehot is None:
        assert labels8 is not None
        onehot, _ = _onehot(labels8, p.shape[1], None, p.dtype)
    return _log_pt(xv, p, onehot, None if every else vf), None


def _counted_p_target(p_t: Tensor, vf: Tensor, every: bool) -> Tensor:
    """``p_t`` ``[B, N]`` (0 where nothing is counted) with 1 where nothing is counted: ``log`` of it
    is then 0 there."""
    return p_t if every else torch.rsub(vf, 1.0).add_(p_t)


#: the CPU's shortcuts that divide by ``p_t`` or by ``1 - p_c`` (the focal and Combo terms' gradients through
#: the softmax's fused backward, Combo's value as one log of a product) apply while every such divisor is
#: at least this (one host read): the probabilities that sum to it are then normal floats and the quotients
#: far from overflow. Below, and on accelerators, the per-class / log-space formulas that need no division
_DIVISOR_FLOOR = 2.0**-100
#: the CPU's few-pass Combo formulas run slice by slice up to this many classes (beyond, the log-space one)
_FEW_PASS_CLASSES = 64
#: at most this many values multiplied per log in :func:`_sum_of_logs`
_LOG_BLOCK = 8


def _leave_one_out_sums(a: Tensor, out: Tensor) -> Tensor:
    """``out[:, i] = sum_{k != i} a[:, k]`` over dim 1 of ``[B, C, N]``, from prefix and suffix sums
    (``3C - 6`` slice additions, no subtraction: for probabilities ``1 - p_i`` stays exact however
    close ``p_i`` is to 1). ``out`` must not overlap ``a``."""
    c = a.shape[1]
    x, o = a.unbind(1), out.unbind(1)
    if c == 1:
        return out.zero_()
    if c == 2:
        o[0].copy_(x[1])
        o[1].copy_(x[0])
        return out
    torch.add(x[c - 2], x[c - 1], out=o[c - 3])  # suffix sums sum_{k > i} a_k into o[i], i = c-3 .. 0
    for i in range(c - 4, -1, -1):
        torch.add(x[i + 1], o[i + 1], out=o[i])
    prefix, running = x[0], None  # prefix sums sum_{k < i} a_k, added in
    for i in range(1, c - 2):
        o[i].add_(prefix)
        running = torch.add(prefix, x[i]) if running is None else running.add_(x[i])
        prefix = running
    torch.add(x[c - 1], prefix, out=o[c - 2])
    torch.add(prefix, x[c - 2], out=o[c - 1])
    return out


def _few_pass_wce(p: Tensor) -> bool:
    return p.device.type == "cpu" and p.numel() > 0 and p.shape[1] <= _FEW_PASS_CLASSES


def _wce_value_cpu(p: Tensor, onehot: Tensor, vf: Tensor, every: bool, on_target: Tensor,
                   beta: float) -> Tensor | None:
    """Combo's weighted cross-entropy summed over the counted pixels, ``sum -(beta log p_t + (1 - beta)
    sum_{c != t} log(1 - p_c))``, in few passes on the CPU; None where it does not apply (not the
    CPU, many classes, or pixels whose probabilities leave float range: the caller then takes the
    log-space formula, exact for any logit). Overwrites ``on_target`` (``p * onehot``, spent once
    its sums are taken).

    ``1 - p_c`` is the sum of the other probabilities (:func:`_leave_one_out_sums`: exact even for a
    confident class), ``max(1 - p_c, y_c)`` drops the target's factor, and one log of their product
    is taken per pixel. The product is at most the smallest factor, so checking its minimum (one
    host read, as for ``log p_t``) checks every non-target ``1 - p_c`` against the floor."""
    if not _few_pass_wce(p):
        return None
    q = _counted_p_target(on_target.sum(1), vf, every)
    complement = _leave_one_out_sums(p, on_target)
    product = torch.maximum(complement, onehot, out=complement).prod(1)  # prod_{c != t} (1 - p_c)
    if not every:
        product.mul_(vf).add_(torch.rsub(vf, 1.0))  # 1 (log 0) where nothing is counted
    q_min, product_min = (float(v) for v in torch.stack([q.min(), product.min()]))
    if not (q_min >= torch.finfo(q.dtype).tiny and product_min >= _DIVISOR_FLOOR):  # NaN (a NaN logit) included
        return None
    if beta == 0.5 and q_min * product_min >= torch.finfo(q.dtype).tiny:  # the default: one log of both factors
        return -0.5 * _sum_of_logs(q.mul_(product), q_min * product_min)
    return -(beta * _sum_of_logs(q, q_min) + (1.0 - beta) * _sum_of_logs(product, product_min))


def _sum_of_logs(v: Tensor, lowest: float) -> Tensor:
    """``sum log v`` over every element of ``v`` (values in ``[lowest, 1]``, ``lowest`` a normal
    float), taking one log per block of ``k`` values multiplied together: a log costs ~10 products
    here. ``k`` keeps every block's product ``>= lowest^k`` among the normal floats (``>= 2^-120`` in float32)."""
    # products stay normal floats (2^-120 for float32, 2^-1016 for float64), where they keep every digit
    floor_exponent = math.log2(torch.finfo(v.dtype).tiny) + 6.0
    k = max(1, min(_LOG_BLOCK, int(floor_exponent / min(math.log2(lowest), -1.0))))
    flat = v.reshape(-1)
    m = flat.numel() // k * k
    if k == 1 or m == 0:
        return flat.log().sum()
    total = flat[:m].view(k, -1).prod(0).log_().sum()  # one reduction over the k blocks
    return total if m == flat.numel() else total + flat[m:].log().sum()


def _wce_softmax_weights(p: Tensor, onehot: Tensor, g: Tensor, beta: float, u: Tensor, v: Tensor,
                         buffer: Tensor | None = None) -> tuple[Tensor, float] | None:
    """Combo's gradient on the CPU in two parts, or None where it does not apply (the caller then takes
    the per-class formulas): ``(w, c)`` with ``w`` ``[B, C, N]`` the ``dL/dp`` of the counts' ``U + y V``
    (``u``, ``v`` ``[B, C]``) and of ``g (1 - beta)`` times the ``log(1 - p_c)`` part, shifted by a
    per-pixel constant, for the softmax's fused backward ``p (w - sum_c p_c w_c)`` (which no such shift
    changes); and ``c = g beta``, the ``beta log p_t`` part's gradient being ``c (p - y)`` with respect to
    the logits, which the caller adds after that backward (no division by ``p_t``).

    ``dL/dp_j = g (1 - beta) / (1 - p_j)`` off the target, with ``1 - p_j`` the sum of the other
    probabilities (exact for a confident class). The shift subtracts the largest off-target entry at each
    pixel: a confident wrong class's entry, which may reach ``2^100 g``, is then exactly 0 and the others'
    ``p_k (w_k - sum)`` stay within rounding of their true size (a product ``p_k / (1 - p_big) <= 1``).
    Applies while every off-target ``1 - p_j`` is at least ``2^-100`` (one host read). ``w`` is written into
    ``buffer`` when given (shaped as ``p``), else into a fresh tensor."""
    if not _few_pass_wce(p):
        return None
    complement = _leave_one_out_sums(p, torch.empty_like(p) if buffer is None else buffer)
    # 1 / (1 - p_j) off the target (>= 1), 1 at it: the largest entry is the largest off-target one
    inv = torch.maximum(complement, onehot, out=complement).reciprocal_()
    top = inv.amax(1, keepdim=True)
    top_max, g_value = (float(x) for x in torch.stack([top.max(), g.to(top.dtype)]))
    if not top_max <= 1.0 / _DIVISOR_FLOOR:
        return None
    a = g_value * (1.0 - beta)
    # the shift first (exactly 0 at a confident wrong class), then U + a inv in one rounding; the target's
    # entry a (1 - top) has its a taken back with V there
    w = torch.add(u.unsqueeze(-1), inv.sub_(top), alpha=a, out=inv)
    return w.addcmul_(onehot, (v - a).unsqueeze(-1)), g_value * beta


def _log_softmax_from(xv: Tensor, p: Tensor) -> Tensor:
    """``log softmax(x)`` over dim 1 given ``p = softmax(x)``, without a second log-sum-exp."""
    return xv - (xv.amax(1) - p.amax(1).log()).unsqueeze(1)


def _focal_by_class(lt: Tensor, onehot: Tensor, gamma_bg: float, gamma_fg: float) -> tuple[Tensor, Tensor]:
    """Focal value and slope of ``log p_t`` (:func:`medloss.losses._common.focal_terms`), with
    ``gamma_bg`` where the target is class 0 and ``gamma_fg`` elsewhere."""
    from .losses._common import focal_terms  # losses import this module

    if gamma_bg == gamma_fg:
        return focal_terms(lt, gamma_fg)
    is_bg = onehot.select(1, 0)
    v0, s0 = focal_terms(lt, gamma_bg)
    # blends by arithmetic in place (lerp is ~5x slower on CPU); both branches are finite
    if gamma_fg == 0.0:  # the asymmetric losses: plain cross-entropy (value -log p, slope 1) off the background
        return v0.add_(lt).mul_(is_bg).sub_(lt), s0.sub_(1.0).mul_(is_bg).add_(1.0)
    v1, s1 = focal_terms(lt, gamma_fg)
    return v0.sub_(v1).mul_(is_bg).add_(v1), s0.sub_(s1).mul_(is_bg).add_(s1)


def _focal_slope_by_class(lt: Tensor, onehot: Tensor, gamma_bg: float, gamma_fg: float, p_t: Tensor) -> Tensor:
    """The focal slope of ``log p_t`` alone (a backward pass needs no value), from ``p_t`` itself."""
    from .losses._common import focal_terms  # losses import this module

    if gamma_bg == gamma_fg:
        return focal_terms(lt, gamma_fg, value=False, p=p_t)[1]
    is_bg = onehot.select(1, 0)
    s0 = focal_terms(lt, gamma_bg, value=False, p=p_t)[1]
    if gamma_fg == 0.0:  # the asymmetric losses: slope 1 off the background
        return s0.sub_(1.0).mul_(is_bg).add_(1.0)
    s1 = focal_terms(lt, gamma_fg, value=False, p=p_t)[1]
    return s0.sub_(s1).mul_(is_bg).add_(s1)


def _background_and_other_weight(weight: Tensor | None) -> tuple[float, float] | None:
    """``(w_0, w)`` when the class weights are one value for the background and one for every other
    class (the Unified family's ``1 - delta`` / ``delta``; no weights: 1 and 1) and readable without a
    device sync (a CPU tensor): the weight at each pixel is then a blend on the background flag
    (two operations), not a per-class lookup. None otherwise."""
    if weight is None:
        return 1.0, 1.0
    if weight.device.type != "cpu" or weight.dim() != 1 or weight.numel() < 2:
        return None
    w = weight.tolist()
    return (w[0], w[1]) if all(v == w[1] for v in w[1:]) else None


def _focal_weight_rows(onehot: Tensor, weight: Tensor | None, vf: Tensor) -> tuple[Tensor, Tensor | None]:
    """What :func:`_weighted_focal_sum` reads of the one-hot ``[B, C, N]``: the background flag ``[B, N]``
    (a view) and, unless the weights are background / other ones, the weight at each pixel ``[B, N]``."""
    w_t = None if _background_and_other_weight(weight) is not None else _class_weight_at(weight, onehot, vf)
    return onehot.select(1, 0), w_t


def _weighted_focal_sum(lt: Tensor, is_bg: Tensor, w_t: Tensor | None, gamma_bg: float, gamma_fg: float,
                        weight: Tensor | None, p_t: Tensor | None) -> Tensor:
    """``sum w_t v_t`` of the focal values of ``log p_t`` ``[B, N]`` (0 where nothing is counted, as
    ``lt`` is there; ``p_t`` its exponential when the caller has it), ``is_bg`` and ``w_t`` as
    :func:`_focal_weight_rows` gives them: with background / other weights, sums over the background and
    the rest rather than a per-pixel blend."""
    from .losses._common import focal_modulator, focal_value  # losses import this module

    weights = _background_and_other_weight(weight)
    if weights is None:
        assert w_t is not None
        return (_focal_value_by_class(lt, is_bg, gamma_bg, gamma_fg, p_t) * w_t).sum()
    w0, w1 = weights
    if gamma_bg == gamma_fg:
        v = focal_value(lt, gamma_fg, p=p_t)
        total = v.sum()
        if w0 != w1:
            return total * w1 + (v * is_bg).sum() * (w0 - w1)
        return total if w1 == 1.0 else total * w1
    if gamma_fg == 0.0:  # -log p_t off the background (gamma_bg > 0 here): sums of lt and of lt there
        lt_bg = lt * is_bg
        background = -focal_modulator(lt, gamma_bg, p=p_t).mul_(lt_bg).sum()
        return background * w0 + (lt_bg.sum() - lt.sum()) * w1
    background = (focal_value(lt, gamma_bg, p=p_t) * is_bg).sum()
    v1 = focal_value(lt, gamma_fg, p=p_t)
    return background * w0 + (v1.sum() - (v1 * is_bg).sum()) * w1


def _weighted_focal_slope(p_t: Tensor, onehot: Tensor, gamma_bg: float, gamma_fg: float, weight: Tensor | None,
                          vf: Tensor | None, every: bool, g: Tensor, lt: Tensor | None = None) -> Tensor:
    """``g w_t slope_t`` ``[B, N]`` (0 where nothing is counted), the focal term's share of the
    backward, from the target's probability ``p_t`` (and its log ``lt`` when the caller has it).

    The slope needs ``log p_t`` only where ``p_t`` is a normal float: below, its limit (``p log p
    -> 0``) is what the smallest normal float gives, exactly (the forward's value uses the exact
    ``log p_t`` from the logits)."""
    from .losses._common import focal_terms  # losses import this module

    if lt is None:
        lt = p_t.clamp_min(torch.finfo(p_t.dtype).tiny).log_()
    weights = _background_and_other_weight(weight)
    if weights is None:
        slope = _focal_slope_by_class(lt, onehot, gamma_bg, gamma_fg, p_t)
        return slope.mul_(_class_weight_at(weight, onehot, vf)).mul_(g)
    w0, w1 = weights
    w0g, w1g = g * w0, g * w1
    is_bg = onehot.select(1, 0)
    if gamma_bg == gamma_fg:
        s = focal_terms(lt, gamma_fg, value=False, p=p_t)[1]
        s = s.mul_(w1g) if w0 == w1 else s.mul_(is_bg * (w0g - w1g) + w1g)
    elif gamma_fg == 0.0:  # w_t s = is_bg (w0 s0 - w1) + w1: the rare classes' slope is 1
        s = torch.addcmul(w1g, is_bg, focal_terms(lt, gamma_bg, value=False, p=p_t)[1].mul_(w0g).sub_(w1g))
    else:
        s1 = focal_terms(lt, gamma_fg, value=False, p=p_t)[1].mul_(w1g)
        s = focal_terms(lt, gamma_bg, value=False, p=p_t)[1].mul_(w0g).sub_(s1).mul_(is_bg).add_(s1)
    return s if every else s.mul_(vf)


def _every_counted(labels8: Tensor, n_classes: int) -> bool:
    """On the CPU, whether every position counts (every byte label is a class index): the masks can
    then be skipped. Elsewhere False (no host read on an accelerator: the masks cost little there)."""
    return labels8.device.type == "cpu" and labels8.numel() > 0 and int(labels8.max()) < n_classes


def _focal_value_by_class(lt: Tensor, is_bg: Tensor, gamma_bg: float, gamma_fg: float,
                          p_t: Tensor | None = None) -> Tensor:
    """The focal value of ``log p_t`` alone (a forward pass needs no slope), ``gamma_bg`` where the
    target is class 0 (``is_bg`` ``[B, N]``) and ``gamma_fg`` elsewhere (``p_t``: as
    :func:`_weighted_focal_sum`)."""
    from .losses._common import focal_value  # losses import this module

    if gamma_bg == gamma_fg:
        return focal_value(lt, gamma_fg, p=p_t)
    v0 = focal_value(lt, gamma_bg, p=p_t)
    v1 = focal_value(lt, gamma_fg, p=p_t) if gamma_fg != 0.0 else lt.neg()
    return v0.sub_(v1).mul_(is_bg).add_(v1)


def _wce_terms(
    logp: Tensor, p: Tensor, onehot: Tensor, beta: float, need_grad: bool
) -> tuple[Tensor | None, Tensor | None]:
    """Combo's weighted cross-entropy at each pixel, ``-(beta log p_t + (1 - beta) sum_{c != t}
    log(1 - p_c))``: ``(value [B, N], None)``, or with ``need_grad`` ``(None, gradient [B, C, N])`` (a
    backward needs no value). Exact for any logit; the CPU's fast paths are :func:`_wce_value_cpu` and
    :func:`_wce_softmax_weights`.

    With ``r_c = p_c / (1 - p_c)``, ``d log(1 - p_c) / dx_j = r_c (p_j - [j = c])``. At most one
    class per pixel has ``p > 1/2`` (the "big" one); there ``log(1 - p)`` is the log-sum-exp of
    the other log-probabilities and ``r`` may overflow, so its terms are rewritten without it
    (``p_j r_big = p_big softmax_others_j``, ``(p_big - 1) r_big = -p_big``): finite for every logit.
    """
    not_t = 1.0 - onehot
    big_f = (p > 0.5).to(p.dtype)
    small_f = 1.0 - big_f
    small_p = p * small_f
    # log(1 - p_big) = logsumexp of the other log-probabilities; masks are arithmetic (where is
    # slow on CPU) and every exp argument is clamped to <= 0
    top = (logp - big_f * 1e30).amax(1, keepdim=True)
    log_big = (torch.exp((logp - top).clamp_(max=0.0)) * small_f).sum(1, keepdim=True).log_().add_(top)
    if not need_grad:
        log_q = torch.log1p(-small_p).add_(big_f * log_big)
        return -(beta * (logp * onehot).sum(1) + (1.0 - beta) * (log_q * not_t).sum(1)), None
    r = small_p / (1.0 - small_p)
    r_rest = (r * not_t).sum(1, keepdim=True)
    p_big = (p * big_f).sum(1, keepdim=True)
    big_not_t = (big_f * not_t).sum(1, keepdim=True)  # 1 where a confident class is not the target
    softmax_others = torch.exp((logp - log_big).clamp_(max=0.0)).mul_(small_f)
    g = p * r_rest + big_not_t * p_big * (softmax_others - big_f) - r * not_t
    grad = (p - onehot).mul_(beta).sub_(g.mul_(1.0 - beta))
    return None, grad


def _term_weights(weight: Tensor | None, n_classes: int, like: Tensor) -> Tensor:
    if weight is None:
        return torch.ones(n_classes, dtype=like.dtype, device=like.device)
    return weight.to(dtype=like.dtype, device=like.device)


def _check_logits(x: Tensor, target: Tensor, name: str) -> None:
    """Shape and dtype checks at the op boundary (cheap, no data read)."""
    torch._check(x.dim() >= 2, lambda: f"{name}: logits must be [B, C, *], got {x.dim()} dims")
    torch._check(x.is_floating_point(), lambda: f"{name}: logits must be floating point, got {x.dtype}")
    torch._check(
        target.shape == (x.shape[0], *x.shape[2:]),
        lambda: f"{name}: target must be [B, *] = {[x.shape[0], *x.shape[2:]]}, got {list(target.shape)}",
    )
    torch._check(not target.is_floating_point(), lambda: f"{name}: target must hold integer labels")


# ------------------------------------------------------------------------ softmax statistics op
@torch.library.custom_op("medloss::softmax_stats", mutates_args=())
def softmax_stats(
    x: Tensor,
    target: Tensor,
    ignore_index: int | None,
    term: int,
    weight: Tensor | None,
    gamma_bg: float,
    gamma_fg: float,
    beta: float,
    keep_softmax: bool = False,
    sum_logits: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Soft confusion counts of ``softmax(x)`` against class indices, and one optional per-pixel term.

    Args: ``x`` ``[B, C, *]`` logits; ``target`` ``[B, *]`` integer labels (``ignore_index`` and
    out-of-range labels count nowhere); ``term``: ``TERM_NONE``, ``TERM_FOCAL`` (the sum over
    counted pixels of ``weight_t * -(1 - p_t)^gamma_t log p_t``, ``gamma_bg`` for class 0 and
    ``gamma_fg`` for the others) or ``TERM_WCE`` (Combo's weighted cross-entropy with ``beta``).

    Returns ``stats`` ``[B, 3, C]`` (TP, sum p, sum y per image and class, in ``x.dtype``), the
    term's sum (0-dim), ``n_bad`` (0-dim int64), the labels for the backward (:func:`_saved_labels`:
    bytes ``[B, N]``, 255 = counted nowhere, ``[B, 0]`` with more than 254 classes; with ``keep_softmax``
    half bytes ``[B, ceil(N / 2)]`` below 15 classes, else ``[B, 0]``) and, with ``keep_softmax``,
    ``softmax(x)`` as ``[B, C, N]`` for the backward (else an empty tensor): the PyTorch path keeps it
    (one logits-sized tensor) rather than recompute it, which costs as much as the rest of its
    backward's passes over the logits; the compiled kernel recomputes it within its one pass. Last, with
    ``sum_logits``, the sum of ``x`` (0-dim; else 0): finite whenever every logit is, read while the
    logits are in the cache (the losses' finiteness check in eager mode: one pass over them fewer).
    """
    return _softmax_stats_torch(x, target, ignore_index, term, weight, gamma_bg, gamma_fg, beta, keep_softmax,
                                sum_logits)


def _class_weight_at(weight: Tensor | None, onehot: Tensor, vf: Tensor) -> Tensor:
    """``w_t`` at each position ``[B, N]`` (1 without weights), 0 where nothing is counted."""
    if weight is None:
        return vf
    return _channel_dot(onehot, weight.to(onehot))


def keeps_softmax(x: Tensor) -> bool:
    """Whether ``softmax_stats`` should keep ``softmax(x)`` for its backward: when a gradient is
    wanted and the PyTorch path runs (the compiled kernel recomputes it more cheaply than it can be
    stored and read). Reads metadata and the kernels' on / off switch only (``torch.compile`` guards on it)."""
    return x.requires_grad and not _native.usable(x)


#: on the CPU the PyTorch path works through the batch in blocks of about this many bytes of logits: each
#: block's dozen passes then run from the cache rather than main memory (the path is bound by memory
#: traffic: [8, 4, 256, 256] forward + backward in two blocks takes ~15 % less time than in one)
_CPU_BLOCK_BYTES = 4 * 2**20


def _batch_blocks(x: Tensor) -> list[tuple[int, int]]:
    """``(start, length)`` of consecutive blocks of the images of ``x`` ``[B, ...]``, each about
    ``_CPU_BLOCK_BYTES`` (one block off the CPU: an accelerator's bandwidth gains nothing from it and
    it would pay in launches)."""
    b = x.shape[0]
    if x.device.type != "cpu" or b < 2:
        return [(0, b)]
    n_blocks = min(b, max(1, -(-x.numel() * x.element_size() // _CPU_BLOCK_BYTES)))
    bounds = [b * i // n_blocks for i in range(n_blocks + 1)]
    return [(lo, hi - lo) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def _softmax_stats_torch(x, target, ignore_index, term, weight, gamma_bg, gamma_fg, beta, keep_softmax=False,
                         sum_logits=False):
    _check_logits(x, target, "medloss::softmax_stats")
    b, c = x.shape[:2]
    xv = x.reshape(b, c, -1)
    t = target.reshape(b, -1)
    parts, softmax = _forward_by_blocks(xv, keep_softmax, lambda s, softmax_out: _softmax_stats_block(
        xv.narrow(0, *s), t.narrow(0, *s), ignore_index, term, weight, gamma_bg, gamma_fg, beta, softmax_out,
        sum_logits,
    ))
    if len(parts) == 1:
        stats, value, n_bad, labels8, total = parts[0]
    else:
        stats, labels8 = (torch.cat([q[i] for q in parts]) for i in (0, 3))
        value, n_bad, total = (torch.stack([q[i] for q in parts]).sum() for i in (1, 2, 4))
    return (stats, value, n_bad, _saved_labels(labels8, c, keep_softmax),
            x.new_empty(0) if softmax is None else softmax, total)


def _forward_by_blocks(xv: Tensor, keep_softmax: bool, block_forward) -> tuple[list, Tensor | None]:
    """The results of ``block_forward((start, length), softmax_out)`` for each block of the images of ``xv``
    ``[B, C, N]`` (:func:`_batch_blocks`), and with ``keep_softmax`` the softmax ``[B, C, N]`` the blocks wrote
    into (``softmax_out``, a block of it: no concatenation), else None (``softmax_out`` None: each block's own)."""
    softmax = xv.new_empty(xv.shape) if keep_softmax else None
    parts = [block_forward(s, None if softmax is None else softmax.narrow(0, *s)) for s in _batch_blocks(xv)]
    return parts, softmax


def _block_softmax(xv: Tensor, softmax_out: Tensor | None, sum_logits: bool) -> tuple[Tensor, Tensor]:
    """``softmax(xv)`` over dim 1 (written into ``softmax_out`` when given: a block of the kept softmax) and
    the sum of ``xv`` with ``sum_logits`` (else 0), taken while the logits are in the cache."""
    return _softmax_into(xv, softmax_out), xv.sum() if sum_logits else xv.new_zeros(())


def _softmax_into(xv: Tensor, out: Tensor | None) -> Tensor:
    """``softmax(xv)`` over dim 1, written into ``out`` when given (else a fresh tensor); returns it.

    aten's ``out=`` overloads of the softmax ops write wrong values, silently, into an ``out`` that is not
    contiguous (pytorch/pytorch#75923, still so in torch 2.13 on the CPU): such an ``out`` gets a copy."""
    if out is None:
        return torch.softmax(xv, 1)
    if out.is_contiguous():
        return torch.ops.aten._softmax.out(xv, 1, False, out=out)
    return out.copy_(torch.softmax(xv, 1))


def _saved_labels(labels8: Tensor, n_classes: int, keep_softmax: bool) -> Tensor:
    """The labels ``softmax_stats`` returns for its backward, from its byte labels ``[B, N]``: those
    bytes (the softmax is recomputed), or with the softmax kept half bytes ``[B, ceil(N / 2)]``
    (:func:`_pack_nibbles`, below ``NIBBLE_SKIP`` classes), else none (``[B, 0]``: the backward makes
    them again from the target). A kept softmax and the half bytes stay within one logits-sized
    tensor plus one byte per pixel, with room for what the loss's formula keeps; the full bytes would
    not, and rebuilding them from int64 targets costs a pass over 8 bytes per pixel."""
    if not keep_softmax:
        return labels8
    if n_classes < NIBBLE_SKIP and labels8.shape[-1]:
        return _pack_nibbles(labels8)
    return labels8.new_empty(labels8.shape[0], 0)


def _saved_label_width(n: int, n_classes: int, keep_softmax: bool) -> int:
    """The last dim of :func:`_saved_labels` for ``n`` pixels (for the fake implementation)."""
    if not keep_softmax:
        return n if n_classes < LABEL_SKIP else 0
    return n - n // 2 if n_classes < NIBBLE_SKIP else 0


def _softmax_stats_block(xv, t, ignore_index, term, weight, gamma_bg, gamma_fg, beta, softmax_out, sum_logits):
    """``softmax_stats`` of logits ``[b, C, N]`` and labels ``[b, N]``: the counts ``[b, 3, C]``, the term's
    sum, ``n_bad``, the byte labels and the logits' sum (0 without ``sum_logits``); the softmax is written into
    ``softmax_out`` when given (kept for the backward: read, never written, from then on)."""
    c = xv.shape[1]
    labels8, onehot, vf, n_bad = _labels_onehot(t, c, ignore_index, xv.dtype, lazy_valid=True)
    every = vf is None or _every_counted(labels8, c)  # no masking needed (CPU, nothing ignored; vf None)
    p, total = _block_softmax(xv, softmax_out, sum_logits)
    sum_p = p.sum(-1) if every else _masked_class_sums(p, vf)
    sum_y = onehot.sum(-1)
    # p at the target class: its class sums are TP, its pixel sums p_t. On the CPU it overwrites the one-hot
    # (a block-sized tensor fewer to pass through the cache: ~0.15 ms a block), except for Combo's value,
    # which reads the one-hot again
    in_place = xv.device.type == "cpu" and term != TERM_WCE
    if term == TERM_FOCAL:
        is_bg, w_t = _focal_weight_rows(onehot, weight, vf)
        if in_place:  # the background flag outlives the one-hot: from the byte labels (or a copy)
            is_bg = torch.eq(labels8, 0, out=xv.new_empty(labels8.shape)) if labels8.shape[-1] else is_bg.clone()
    on_target = onehot.mul_(p) if in_place else p * onehot
    tp = on_target.sum(-1)
    value = xv.new_zeros(())
    if term == TERM_FOCAL:
        lt, p_t = _log_p_target(xv, p, None if in_place else onehot, vf, every, on_target, labels8)  # 0 if uncounted
        value = _weighted_focal_sum(lt, is_bg, w_t, gamma_bg, gamma_fg, weight, p_t)
    elif term == TERM_WCE:
        value = _wce_value_cpu(p, onehot, vf, every, on_target, beta)
        if value is None:
            v, _ = _wce_terms(_log_softmax_from(xv, p), p, onehot, beta, need_grad=False)
            assert v is not None
            value = v.sum() if every else (v * vf).sum()
    return torch.stack([tp, sum_p, sum_y], 1), value, n_bad, labels8, total


@softmax_stats.register_fake
def _(x, target, ignore_index, term, weight, gamma_bg, gamma_fg, beta, keep_softmax=False, sum_logits=False):
    _check_logits(x, target, "medloss::softmax_stats")
    b, c = x.shape[:2]
    n = 1
    for s in x.shape[2:]:
        n *= s
    return (
        x.new_empty(b, 3, c),
        x.new_empty(()),
        x.new_empty((), dtype=torch.int64),
        x.new_empty(b, _saved_label_width(n, c, keep_softmax), dtype=torch.uint8),
        x.new_empty(b, c, n) if keep_softmax else x.new_empty(0),
        x.new_empty(()),
    )


def _kernel_term(term: int, weight: Tensor | None, n_classes: int, gamma_bg: float, gamma_fg: float, beta: float):
    if term == TERM_FOCAL:
        w = torch.ones(n_classes, dtype=torch.float64) if weight is None else weight.detach().to("cpu", torch.float64)
        gammas = torch.full((n_classes,), float(gamma_fg), dtype=torch.float64)
        gammas[0] = float(gamma_bg)
        return w, gammas
    if term == TERM_WCE:
        return torch.tensor([beta, 1.0 - beta], dtype=torch.float64), None
    return None, None


@softmax_stats.register_kernel("cpu")
def _(x, target, ignore_index, term, weight, gamma_bg, gamma_fg, beta, keep_softmax=False, sum_logits=False):
    if keep_softmax or not _native.usable(x):
        return _softmax_stats_torch(x, target, ignore_index, term, weight, gamma_bg, gamma_fg, beta, keep_softmax,
                                    sum_logits)
    _check_logits(x, target, "medloss::softmax_stats")
    b, c = x.shape[:2]
    term_w, gammas = _kernel_term(term, weight, c, gamma_bg, gamma_fg, beta)
    r = _native.softmax_pass(
        x.contiguous(), target.reshape(b, -1).long().contiguous(), None, ignore_index=ignore_index, stats=True,
        keep_labels=True, term=term, term_w=term_w, gamma=gammas,
    )
    labels8 = r.labels8
    if r.n_bad:  # the kernel marks bad labels LABEL_SKIP - 1: make them count nowhere in the backward too
        labels8.masked_fill_(labels8 == LABEL_SKIP - 1, LABEL_SKIP)
    return (
        r.stats.to(x.dtype),
        torch.tensor(r.term, dtype=x.dtype),
        torch.tensor(r.n_bad, dtype=torch.int64),
        labels8,
        x.new_empty(0),
        x.sum() if sum_logits else x.new_zeros(()),
    )


@torch.library.custom_op("medloss::softmax_stats_backward", mutates_args=())
def softmax_stats_backward(
    x: Tensor,
    target: Tensor,
    labels8: Tensor,
    ignore_index: int | None,
    term: int,
    weight: Tensor | None,
    gamma_bg: float,
    gamma_fg: float,
    beta: float,
    g_tp: Tensor,
    g_sum_p: Tensor,
    g_term: Tensor,
    native: bool,
    softmax: Tensor,
) -> Tensor:
    """Gradient of ``softmax_stats`` with respect to ``x``, for incoming gradients of TP and sum p
    (``[B, C]``) and of the term (0-dim). ``softmax``: the forward's kept ``softmax(x)`` ``[B, C, N]``
    (read only), or empty: it is then recomputed from ``x``. ``native``: whether
    the compiled kernels were on when the forward ran: the backward follows that choice, whatever is
    in force when it runs (a graph built inside ``implementation("pytorch")`` is differentiated by the
    PyTorch path even if ``backward()`` runs after the block)."""
    return _softmax_stats_backward_torch(
        x, target, labels8, ignore_index, term, weight, gamma_bg, gamma_fg, beta, g_tp, g_sum_p, g_term, softmax
    )


def _softmax_stats_backward_torch(x, target, labels8, ignore_index, term, weight, gamma_bg, gamma_fg, beta, g_tp,
                                  g_sum_p, g_term, softmax=None):
    b, c = x.shape[:2]
    xv = x.reshape(b, c, -1)
    t = target.reshape(b, -1)
    kept = softmax is not None and softmax.numel() > 0
    p = softmax.view(xv.shape) if kept else None
    if kept and labels8.shape[-1]:  # the forward's half bytes, unpacked once for every block
        labels8 = _unpack_nibbles(labels8, xv.shape[-1])
    u, v, g = g_sum_p.to(x.dtype), g_tp.to(x.dtype), g_term.to(x.dtype)
    return _gradient_by_blocks(x, lambda s, out: _softmax_stats_backward_block(
        xv.narrow(0, *s), t.narrow(0, *s), labels8.narrow(0, *s), ignore_index, term, weight, gamma_bg, gamma_fg,
        beta, v.narrow(0, *s), u.narrow(0, *s), g, None if p is None else p.narrow(0, *s), out,
    ))


def _gradient_by_blocks(x: Tensor, block_grad) -> Tensor:
    """The gradient ``x``-shaped, from ``block_grad((start, length), out)``, the gradient of one block of
    images written into ``out`` (``[b, C, N]``), or a fresh tensor it returns when ``out`` is None (a single
    block: no buffer to fill)."""
    blocks = _batch_blocks(x)
    if len(blocks) == 1:
        return block_grad(blocks[0], None).view_as(x)
    b, c = x.shape[:2]
    grad = torch.empty(b, c, x.numel() // (b * c), dtype=x.dtype, device=x.device)
    for s in blocks:
        block_grad(s, grad.narrow(0, *s))
    return grad.view_as(x)


def _softmax_stats_backward_block(xv, t, labels8, ignore_index, term, weight, gamma_bg, gamma_fg, beta, v, u, g,
                                  p, out):
    """The backward of one block (logits ``[b, C, N]``, byte labels ``[b, N]`` or none, incoming ``v = dL/dTP`` and
    ``u = dL/dsum_p`` ``[b, C]``, ``g = dL/dterm``) into ``out`` ``[b, C, N]`` (a block of the CPU's), or
    a fresh tensor when ``out`` is None; returns it. ``p``: the kept softmax (read only: a retained graph
    may run backward again), or None (recomputed here, and then overwritten by the gradient)."""
    # dL/dx_j = p_j (U_j - S) + [j = t] p_t V_t with U = dL/dsum_p, V = dL/dTP, S = sum_k p_k U_k + p_t V_t,
    # plus the term's w (p_j - [j = t]) (focal: w its slope times the class weight); 0 at uncounted pixels
    c, dtype = xv.shape[1], xv.dtype
    kept = p is not None
    # on the CPU, with the softmax kept, the counts' and focal term's one-hot is made in the gradient's own block
    # and turned into dL/dp there, which the softmax's backward overwrites in place (one block-sized tensor
    # fewer), where this torch build's kernel is checked to allow it (Combo's term needs its one-hot beside)
    onehot_in_out = (out is not None and kept and term != TERM_WCE and labels8.shape[-1] > 0
                     and _softmax_backward_in_place_ok())
    if labels8.shape[-1]:  # the labels of the forward: 8x less to read than int64 targets
        every = _every_counted(labels8, c)  # no masking needed (vf then None)
        onehot, vf = _onehot(labels8, c, None, dtype, valid=not every, out=out if onehot_in_out else None)
    elif c < LABEL_SKIP:  # not kept: made again from the target
        labels8, onehot, vf, _ = _labels_onehot(t, c, ignore_index, dtype, count_bad=False, lazy_valid=True)
        every = vf is None or _every_counted(labels8, c)
    else:
        onehot, vf = _onehot(t, c, ignore_index, dtype)
        every = False
    if not kept:
        p = torch.softmax(xv, 1)
    # dL/dp is written over the one-hot once that is spent (one block-sized tensor fewer through the cache)
    if term == TERM_NONE:  # dL/dp = U + y V (0 where nothing counts): the softmax's own fused backward
        w = torch.addcmul(u.unsqueeze(-1), onehot, v.unsqueeze(-1), out=onehot)
        return _softmax_backward_into(w, p, out, None if every else vf)
    if term == TERM_WCE:
        # on the CPU the leave-one-out sums, and then dL/dp, go into the block of the gradient itself, which the
        # softmax's backward then overwrites in place (one block-sized tensor fewer: ~0.1x CE), where this torch
        # build's kernel is checked to allow it
        in_out = out is not None and _softmax_backward_in_place_ok()
        fused = _wce_softmax_weights(p, onehot, g, beta, u, v, out if in_out else None)
        if fused is not None:  # dL/dp = U + y V + the log(1 - p) part's, through the softmax's fused backward
            w, ce = fused
            grad = _softmax_backward_into(w, p, out, None if every else vf)
            if ce:  # and the beta log p_t part's c (p - y), 0 where nothing counts
                grad = grad.add_(p, alpha=ce) if every else grad.addcmul_(p, vf.unsqueeze(1), value=ce)
                grad.sub_(onehot, alpha=ce)
            return grad
    p_t = _channel_dot(p, onehot)
    slope = None
    if term == TERM_FOCAL:
        if p.device.type == "cpu":  # the term joins dL/dp at the target: the softmax's fused backward again
            q = _counted_p_target(p_t, vf, every)  # 1 where nothing is counted (slope 0 there)
            if float(q.min()) >= _DIVISOR_FLOOR:  # every counted p_t normal: its log needs no floor
                slope = _weighted_focal_slope(p_t, onehot, gamma_bg, gamma_fg, weight, vf, every, g, torch.log(q))
                # w_t s (p_j - [j = t]) = p_j (a - S) + ... with dL/dp_t += a = -w_t s / p_t
                v_t = _channel_dot(onehot, v).sub_(slope.div_(q))
                w = torch.addcmul(u.unsqueeze(-1), onehot, v_t.unsqueeze(1), out=onehot)
                return _softmax_backward_into(w, p, out, None if every else vf)
        if onehot_in_out:  # the per-class formulas below write the gradient channel by channel into out
            onehot = onehot.clone()
        slope = _weighted_focal_slope(p_t, onehot, gamma_bg, gamma_fg, weight, vf, every, g)
    on_target = p_t * _channel_dot(onehot, v)  # p_t V_t
    pixel = _channel_dot(p, u).add_(on_target).neg_()  # -S
    if slope is not None:
        pixel.add_(slope)
        on_target.sub_(slope)
    wce_grad = None
    if term == TERM_WCE:  # outside the range of the fused form above: the log-space gradient, exact for any logit
        _, wce_grad = _wce_terms(_log_softmax_from(xv, p), p, onehot, beta, need_grad=True)
    # grad = p (U + pixel) vf + onehot p_t V_t (+ g vf dWCE), channel by channel (into a recomputed p)
    if out is None:
        out = torch.empty_like(p) if kept else p
    factor = torch.empty_like(pixel)  # one temporary for every class (a fresh one each costs ~4x)
    for i in range(c):
        gi = out.select(1, i)
        torch.add(pixel, u.narrow(1, i, 1), out=factor)
        torch.mul(p.select(1, i), factor if every else factor.mul_(vf), out=gi).addcmul_(onehot.select(1, i), on_target)
    if wce_grad is not None:
        out.add_(wce_grad.mul_(g if every else (g * vf).unsqueeze(1)))
    return out


@functools.cache
def _softmax_backward_in_place_ok() -> bool:
    """Whether this torch build's CPU ``_softmax_backward_data.out`` gives the same result with its gradient
    output written over its incoming gradient (it reads each entry before writing it; the op does not
    promise so, hence the check, once per process, bit for bit, in both float types and channel counts on
    both sides of the vector width)."""
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        for shape in ((2, 3, 37), (3, 19, 130)):
            p = torch.softmax(torch.randn(shape, generator=g, dtype=dtype, device="cpu"), 1)
            w = torch.randn(shape, generator=g, dtype=dtype, device="cpu")
            expected = torch._softmax_backward_data(w, p, 1, dtype)
            try:
                got = torch.ops.aten._softmax_backward_data.out(w, p, 1, dtype, grad_input=w)
            except RuntimeError:  # a build that refuses the overlap
                return False
            if not torch.equal(got, expected):
                return False
    return True


def _softmax_backward_into(w: Tensor, p: Tensor, out: Tensor | None, vf: Tensor | None) -> Tensor:
    """``p (w - sum_c p_c w_c)`` over dim 1 (the softmax's fused backward) of ``dL/dp = w``, zeroed first
    where ``vf`` is 0 (pixels counted nowhere; None: every pixel counts), into ``out`` (a CPU block, which
    may be ``w`` itself: see :func:`_softmax_backward_in_place_ok`), or a fresh tensor when ``out`` is None;
    returns it."""
    if vf is not None:
        w.mul_(vf.unsqueeze(1))
    if out is None:
        return torch._softmax_backward_data(w, p, 1, p.dtype)
    if not out.is_contiguous():  # the out= overload writes a strided out wrongly (see _softmax_into)
        return out.copy_(torch._softmax_backward_data(w, p, 1, p.dtype))
    return torch.ops.aten._softmax_backward_data.out(w, p, 1, p.dtype, grad_input=out)


@softmax_stats_backward.register_fake
def _(x, target, labels8, ignore_index, term, weight, gamma_bg, gamma_fg, beta, g_tp, g_sum_p, g_term, native, softmax):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@softmax_stats_backward.register_kernel("cpu")
def _(x, target, labels8, ignore_index, term, weight, gamma_bg, gamma_fg, beta, g_tp, g_sum_p, g_term, native, softmax):
    b, c = x.shape[:2]
    if softmax.numel() or not _native.usable(x, enabled=native) or labels8.shape[-1] == 0:
        return _softmax_stats_backward_torch(
            x, target, labels8, ignore_index, term, weight, gamma_bg, gamma_fg, beta, g_tp, g_sum_p, g_term, softmax
        )
    term_w, gammas = _kernel_term(term, weight, c, gamma_bg, gamma_fg, beta)
    r = _native.softmax_pass(
        x.contiguous(), None, labels8=labels8.contiguous(), term=term, term_w=term_w, gamma=gammas, grad=True,
        u=g_sum_p, v=g_tp, g_term=float(g_term) if term != TERM_NONE else 0.0,
    )
    return r.grad.view_as(x)


def _softmax_stats_setup(ctx, inputs, output):
    x, target, ignore_index, term, weight, gamma_bg, gamma_fg, beta, keep_softmax, sum_logits = inputs
    ctx.args = (ignore_index, term, gamma_bg, gamma_fg, beta, _native.native_kernels_available())
    ctx.set_materialize_grads(False)  # no logits-sized zeros for the kept softmax's (absent) gradient
    ctx.mark_non_differentiable(output[4], output[5])  # differentiating them is an error, not a zero
    ctx.save_for_backward(x, target, output[3], weight, output[4])  # labels: see _saved_labels


def _softmax_stats_grad(ctx, g_stats, g_term, _g_bad, _g_labels, _g_softmax, _g_sum):
    x, target, labels8, weight, softmax = ctx.saved_tensors
    ignore_index, term, gamma_bg, gamma_fg, beta, native = ctx.args
    if g_stats is None:
        g_stats = x.new_zeros(x.shape[0], 3, x.shape[1])
    if g_term is None:
        g_term = x.new_zeros(())
    if torch.is_grad_enabled():  # create_graph=True: differentiate the defining formula
        from .losses._common import second_order_grads
        from .losses._overlap import softmax_statistics_reference

        spec = None
        if term == TERM_FOCAL:
            gammas = torch.full((x.shape[1],), gamma_fg, dtype=x.dtype, device=x.device)
            gammas[0] = gamma_bg
            spec = ("focal", _term_weights(weight, x.shape[1], x), gammas, 1.0)
        elif term == TERM_WCE:
            spec = ("wce", beta, 1.0)
        b, c = x.shape[:2]
        onehot, vf = _onehot(target.reshape(b, -1), c, ignore_index, x.dtype)
        tt, valid = onehot.argmax(1), vf > 0

        def reference(x_: Tensor):
            tp, sum_p, sum_y, value = softmax_statistics_reference(x_, tt, valid, False, spec)
            return torch.stack([tp, sum_p, sum_y], 1), value

        (grad,) = second_order_grads(reference, (x,), (g_stats, g_term))
    else:
        grad = softmax_stats_backward(
            x, target, labels8, ignore_index, term, weight, gamma_bg, gamma_fg, beta,
            g_stats.select(1, 0).contiguous(), g_stats.select(1, 1).contiguous(), g_term, native, softmax,
        )
    return grad, None, None, None, None, None, None, None, None, None


softmax_stats.register_autograd(_softmax_stats_grad, setup_context=_softmax_stats_setup)


# ------------------------------------------------------------------------------ softmax focal op
@torch.library.custom_op("medloss::softmax_focal", mutates_args=())
def softmax_focal(
    x: Tensor,
    target: Tensor,
    ignore_index: int | None,
    weight: Tensor | None,
    gamma_bg: float,
    gamma_fg: float,
    label_smoothing: float,
    per_position: bool,
    keep_softmax: bool = False,
    sum_logits: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Focal loss of ``softmax(x)``: ``-w_t (1 - p_t)^gamma_t log p_t`` at each counted position
    (``gamma_bg`` where the target is class 0, ``gamma_fg`` elsewhere); with ``label_smoothing``
    (one gamma) the target is ``q = (1 - eps) onehot + eps / C``, weighted per class, and the loss
    ``-sum_c q_c w_c (1 - p_c)^gamma log p_c``.

    Returns the loss per position ``[B, *]`` (0 where nothing is counted) if ``per_position``,
    else its sum (0-dim); the number of counted positions of each class ``[C]``; ``n_bad``; and, as
    ``softmax_stats``, the labels and ``softmax(x)`` kept for the backward with ``keep_softmax`` (images
    without smoothing only; else ``[B, 0]`` and an empty tensor: the backward recomputes both) and the
    logits' sum with ``sum_logits`` (else 0).
    """
    return _softmax_focal_torch(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, per_position,
                                keep_softmax, sum_logits)


def _smoothed_target(onehot: Tensor, vf: Tensor, w: Tensor, eps: float) -> Tensor:
    """``q_c w_c`` ``[B, C, N]``: PyTorch's smoothing (``eps / C`` on every class, ``1 - eps`` more
    on the target), weighted per class; 0 where nothing is counted."""
    n_classes = onehot.shape[1]
    return (onehot * (1.0 - eps)).add_(vf.unsqueeze(1) * (eps / n_classes)).mul_(w.view(1, -1, 1))


def _row_labels(x: Tensor, target: Tensor, ignore_index: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """Rows ``[N, C]`` (classification): ``(safe labels [N, 1], counted [N] in x.dtype, n_bad)``."""
    c = x.shape[1]
    counted = (target >= 0) & (target < c)
    if ignore_index is not None:
        bad = ~counted & (target != ignore_index)
        counted = counted & (target != ignore_index)
    else:
        bad = ~counted
    return torch.where(counted, target, 0).long().unsqueeze(1), counted.to(x.dtype), bad.sum()


def _row_focal(x, target, ignore_index, weight, gamma_bg, gamma_fg):
    """Focal value and slope ``[N]`` of rows ``[N, C]`` (no smoothing) with the log-softmax over the
    short last dim (``x - logsumexp``: 3-4x faster than the channel layout of images there)."""
    tt, vf, n_bad = _row_labels(x, target, ignore_index)
    logp = x - torch.logsumexp(x, 1, keepdim=True)
    lt = logp.gather(1, tt).squeeze(1).mul_(vf)
    onehot0 = (tt.squeeze(1) == 0).to(x.dtype).unsqueeze(1)  # the background flag _focal_by_class reads
    value, slope = _focal_by_class(lt, onehot0, gamma_bg, gamma_fg)
    w = vf if weight is None else weight.to(x).gather(0, tt.squeeze(1)).mul_(vf)
    return logp, tt, vf, value.mul_(w), slope.mul_(w), n_bad


def _focal_keeps(x: Tensor, keep_softmax: bool, label_smoothing: float) -> bool:
    """Whether ``softmax_focal`` keeps the softmax: asked for, images, no smoothing."""
    return keep_softmax and x.dim() > 2 and label_smoothing == 0.0


def _softmax_focal_torch(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, per_position,
                         keep_softmax=False, sum_logits=False):
    _check_logits(x, target, "medloss::softmax_focal")
    b, c = x.shape[:2]
    no_labels = x.new_empty(b, 0, dtype=torch.uint8)
    if x.dim() == 2 and label_smoothing == 0.0:
        _, tt, vf, value, _, n_bad = _row_focal(x, target, ignore_index, weight, gamma_bg, gamma_fg)
        counts = torch.zeros(x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, tt.squeeze(1), vf)
        total = x.sum() if sum_logits else x.new_zeros(())
        return (value if per_position else value.sum()), counts, n_bad, no_labels, x.new_empty(0), total
    keep = _focal_keeps(x, keep_softmax, label_smoothing)
    xv = x.reshape(b, c, -1)
    t = target.reshape(b, -1)
    parts, softmax = _forward_by_blocks(xv, keep, lambda s, softmax_out: _softmax_focal_block(
        xv.narrow(0, *s), t.narrow(0, *s), ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, per_position,
        softmax_out, sum_logits,
    ))
    if len(parts) == 1:
        value, counts, n_bad, labels8, total = parts[0]
    else:
        value = torch.cat([q[0] for q in parts]) if per_position else torch.stack([q[0] for q in parts]).sum()
        counts, n_bad = torch.stack([q[1] for q in parts]).sum(0), torch.stack([q[2] for q in parts]).sum()
        labels8 = torch.cat([q[3] for q in parts])
        total = torch.stack([q[4] for q in parts]).sum()
    labels = _saved_labels(labels8, c, True) if keep else no_labels
    return ((value.view(b, *x.shape[2:]) if per_position else value), counts, n_bad, labels,
            x.new_empty(0) if softmax is None else softmax, total)


def _softmax_focal_block(xv, t, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, per_position,
                         softmax_out=None, sum_logits=False):
    """``softmax_focal`` of logits ``[b, C, N]`` and labels ``[b, N]``: the value ``[b, N]`` (or its sum),
    the class counts, ``n_bad``, the byte labels and the logits' sum (0 without ``sum_logits``); the softmax
    is written into ``softmax_out`` when given (kept for the backward: read, never written, from then on)."""
    c = xv.shape[1]
    labels8, onehot, vf, n_bad = _labels_onehot(t, c, ignore_index, xv.dtype)
    p, total = _block_softmax(xv, softmax_out, sum_logits)
    if label_smoothing == 0.0:
        lt, p_t = _log_p_target(xv, p, onehot, vf, _every_counted(labels8, c))  # 0 wherever nothing is counted
        if per_position:
            value = _focal_value_by_class(lt, onehot.select(1, 0), gamma_bg, gamma_fg, p_t)
            value = value.mul_(_class_weight_at(weight, onehot, vf))
        else:  # the sum at once (background / other weights: two sums, no per-pixel blend)
            value = _weighted_focal_sum(lt, *_focal_weight_rows(onehot, weight, vf), gamma_bg, gamma_fg, weight, p_t)
    else:
        from .losses._common import focal_terms

        value_c, _ = focal_terms(_log_softmax_from(xv, p), gamma_fg)
        value = (_smoothed_target(onehot, vf, _term_weights(weight, c, xv), label_smoothing) * value_c).sum(1)
    return (value if per_position else value.sum()), onehot.sum((0, 2)), n_bad, labels8, total


@softmax_focal.register_fake
def _(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, per_position, keep_softmax=False,
      sum_logits=False):
    _check_logits(x, target, "medloss::softmax_focal")
    b, c = x.shape[:2]
    n = 1
    for size in x.shape[2:]:
        n *= size
    out = x.new_empty(b, *x.shape[2:]) if per_position else x.new_empty(())
    keep = _focal_keeps(x, keep_softmax, label_smoothing)
    return (
        out,
        x.new_empty(c),
        x.new_empty((), dtype=torch.int64),
        x.new_empty(b, _saved_label_width(n, c, True) if keep else 0, dtype=torch.uint8),
        x.new_empty(b, c, n) if keep else x.new_empty(0),
        x.new_empty(()),
    )


def _focal_in_kernel(x: Tensor, per_position: bool, label_smoothing: float, enabled: bool | None = None) -> bool:
    """Sums without smoothing of images run in the compiled kernel (one pass each way)."""
    return not per_position and label_smoothing == 0.0 and x.dim() > 2 and _native.usable(x, enabled)


@softmax_focal.register_kernel("cpu")
def _(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, per_position, keep_softmax=False,
      sum_logits=False):
    if _focal_keeps(x, keep_softmax, label_smoothing) or not _focal_in_kernel(x, per_position, label_smoothing):
        return _softmax_focal_torch(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, per_position,
                                    keep_softmax, sum_logits)
    _check_logits(x, target, "medloss::softmax_focal")
    b, c = x.shape[:2]
    term_w, gammas = _kernel_term(TERM_FOCAL, weight, c, gamma_bg, gamma_fg, 0.5)
    r = _native.softmax_pass(
        x.contiguous(), target.reshape(b, -1).long().contiguous(), None, ignore_index=ignore_index, stats=True,
        term=TERM_FOCAL, term_w=term_w, gamma=gammas,
    )
    return (
        torch.tensor(r.term, dtype=x.dtype),
        r.stats[:, 2].sum(0).to(x.dtype),
        torch.tensor(r.n_bad, dtype=torch.int64),
        x.new_empty(b, 0, dtype=torch.uint8),
        x.new_empty(0),
        x.sum() if sum_logits else x.new_zeros(()),
    )


@torch.library.custom_op("medloss::softmax_focal_backward", mutates_args=())
def softmax_focal_backward(
    x: Tensor,
    target: Tensor,
    ignore_index: int | None,
    weight: Tensor | None,
    gamma_bg: float,
    gamma_fg: float,
    label_smoothing: float,
    grad_out: Tensor,
    native: bool,
    labels: Tensor,
    softmax: Tensor,
) -> Tensor:
    """Gradient of ``softmax_focal`` (per-position ``grad_out`` ``[B, *]``, or 0-dim for the sum);
    ``native`` as for ``softmax_stats_backward``; ``labels`` and ``softmax``: what the forward kept (read
    only), or empty (both made again)."""
    return _softmax_focal_backward_torch(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing,
                                         grad_out, labels, softmax)


def _softmax_focal_backward_torch(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, grad_out,
                                  labels=None, softmax=None):
    if x.dim() == 2 and label_smoothing == 0.0:
        logp, tt, _, _, slope, _ = _row_focal(x, target, ignore_index, weight, gamma_bg, gamma_fg)
        s = slope.mul_(grad_out.to(x.dtype)).unsqueeze(1)
        return logp.exp_().mul_(s).scatter_add_(1, tt, -s)  # w_t slope (p_j - [j = t])
    b, c = x.shape[:2]
    xv = x.reshape(b, c, -1)
    t = target.reshape(b, -1)
    g = grad_out.to(x.dtype)
    g = g.reshape(b, -1) if g.dim() else g
    p = softmax.view(xv.shape) if softmax is not None and softmax.numel() else None
    if p is not None and labels.shape[-1]:  # the forward's half bytes, unpacked once for every block
        labels = _unpack_nibbles(labels, xv.shape[-1])
    return _gradient_by_blocks(x, lambda s, out: _softmax_focal_backward_block(
        xv.narrow(0, *s), t.narrow(0, *s), ignore_index, weight, gamma_bg, gamma_fg, label_smoothing,
        g.narrow(0, *s) if g.dim() else g, out,
        None if p is None else labels.narrow(0, *s), None if p is None else p.narrow(0, *s),
    ))


def _softmax_focal_backward_block(xv, t, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, g, out,
                                  labels=None, p=None):
    """The backward of one block (``[b, C, N]``; ``g`` ``[b, N]`` or 0-dim) into ``out`` when given (a block
    of the CPU's), else a fresh tensor; returns the gradient. ``p``: the forward's kept softmax (read only),
    with its byte ``labels`` (unpacked from :func:`_saved_labels`; none from 15 classes up); else the softmax
    is recomputed into ``out`` and the gradient computed there in place."""
    c = xv.shape[1]
    if p is not None and labels.shape[-1]:  # the forward's labels
        labels8 = labels
        every = _every_counted(labels8, c)
        onehot, vf = _onehot(labels8, c, None, xv.dtype, valid=not every, out=out)  # made in the gradient's block
    else:
        labels8, onehot, vf, _ = _labels_onehot(t, c, ignore_index, xv.dtype, count_bad=False)
        every = _every_counted(labels8, c)
    if p is not None:  # d/dx_j w_t f(log p_t) = w_t slope (p_j - [j = t]), over the spent one-hot or into out
        s = _weighted_focal_slope(_channel_dot(p, onehot), onehot, gamma_bg, gamma_fg, weight, vf, every, g)
        grad = torch.sub(p, onehot, out=onehot if out is None or onehot is out else out)
        return grad.mul_(s.unsqueeze(1))
    p = _softmax_into(xv, out)
    if label_smoothing == 0.0:
        # d/dx_j w_t f(log p_t) = w_t slope (p_j - [j = t]), written into p channel by channel
        s = _weighted_focal_slope(_channel_dot(p, onehot), onehot, gamma_bg, gamma_fg, weight, vf, every, g)
        grad = p.sub_(onehot)
        for i in range(c):
            grad.select(1, i).mul_(s)
    else:
        from .losses._common import focal_terms

        _, slope_c = focal_terms(_log_softmax_from(xv, p), gamma_fg)
        wq = _smoothed_target(onehot, vf, _term_weights(weight, c, xv), label_smoothing).mul_(slope_c)
        wq = wq.mul_(g.unsqueeze(1)) if g.dim() else wq.mul_(g)
        grad = p.mul_(wq.sum(1, keepdim=True)).sub_(wq)
    return grad


@softmax_focal_backward.register_fake
def _(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, grad_out, native, labels, softmax):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@softmax_focal_backward.register_kernel("cpu")
def _(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, grad_out, native, labels, softmax):
    if softmax.numel() or not _focal_in_kernel(x, grad_out.dim() > 0, label_smoothing, enabled=native):
        return _softmax_focal_backward_torch(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing,
                                             grad_out, labels, softmax)
    b, c = x.shape[:2]
    term_w, gammas = _kernel_term(TERM_FOCAL, weight, c, gamma_bg, gamma_fg, 0.5)
    zeros = torch.zeros(b, c, dtype=torch.float64)
    r = _native.softmax_pass(
        x.contiguous(), target.reshape(b, -1).long().contiguous(), None, ignore_index=ignore_index,
        term=TERM_FOCAL, term_w=term_w, gamma=gammas, grad=True, u=zeros, v=zeros, g_term=float(grad_out),
    )
    return r.grad.view_as(x)


def _softmax_focal_setup(ctx, inputs, output):
    x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing = inputs[:7]
    ctx.args = (ignore_index, gamma_bg, gamma_fg, label_smoothing, _native.native_kernels_available())
    ctx.set_materialize_grads(False)  # no logits-sized zeros for the kept softmax's (absent) gradient
    ctx.mark_non_differentiable(*output[1:])  # counts, n_bad, labels, softmax, the logits' sum
    ctx.save_for_backward(x, target, weight, output[3], output[4])


def _softmax_focal_grad(ctx, grad_out, _g_counts, _g_bad, _g_labels, _g_softmax, _g_sum):
    x, target, weight, labels, softmax = ctx.saved_tensors
    if grad_out is None:
        return None, None, None, None, None, None, None, None, None, None
    ignore_index, gamma_bg, gamma_fg, label_smoothing, native = ctx.args
    if torch.is_grad_enabled():  # create_graph=True: differentiate the defining formula
        from .losses._common import focal_modulated_log, second_order_grads

        b, c = x.shape[:2]
        onehot, vf = _onehot(target.reshape(b, -1), c, ignore_index, x.dtype)
        w = _term_weights(weight, c, x)

        def reference(x_: Tensor) -> Tensor:
            logp = torch.log_softmax(x_.reshape(b, c, -1), 1)
            if label_smoothing == 0.0:
                lt = (logp * onehot).sum(1) - (1.0 - vf)  # uncounted positions: any finite log p (weight 0)
                gamma = gamma_fg if gamma_bg == gamma_fg else torch.lerp(
                    torch.full_like(lt, gamma_fg), torch.full_like(lt, gamma_bg), onehot.select(1, 0))
                value = focal_modulated_log(lt, gamma) * _class_weight_at(weight, onehot, vf)
            else:
                value = (_smoothed_target(onehot, vf, w, label_smoothing) * focal_modulated_log(logp, gamma_fg)).sum(1)
            return value.view(b, *x.shape[2:]) if grad_out.dim() else value.sum()

        (grad,) = second_order_grads(reference, (x,), (grad_out,))
    else:
        grad = softmax_focal_backward(x, target, ignore_index, weight, gamma_bg, gamma_fg, label_smoothing, grad_out,
                                      native, labels, softmax)
    return grad, None, None, None, None, None, None, None, None, None


softmax_focal.register_autograd(_softmax_focal_grad, setup_context=_softmax_focal_setup)


# ------------------------------------------------------------------------ sigmoid statistics op
def _sigmoid_views(x: Tensor, y: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    b, c = x.shape[:2]
    xv = x.reshape(b, c, -1)
    yv = y.reshape(b, c, -1).to(x.dtype)
    m = None if valid is None else valid.reshape(b, -1, xv.shape[-1]).to(x.dtype)
    return xv, yv, m


def sigmoid_stats_reference(x: Tensor, y: Tensor, valid: Tensor | None) -> Tensor:
    """The defining formula of ``sigmoid_stats`` in plain differentiable operations (second derivatives)."""
    xv, yv, m = _sigmoid_views(x, y, valid)
    p = torch.sigmoid(xv)
    if m is not None:
        p, yv = p * m, yv * m
    return torch.stack([(p * yv).sum(-1), p.sum(-1), yv.sum(-1)], 1)


@torch.library.custom_op("medloss::sigmoid_stats", mutates_args=())
def sigmoid_stats(x: Tensor, y: Tensor, valid: Tensor | None) -> Tensor:
    """Per image and channel soft TP / sum p / sum y ``[B, 3, C]`` of ``sigmoid(x)`` against ``y``
    in [0, 1] (same shape as ``x``); positions where ``valid`` (``[B, 1, *]`` or ``[B, C, *]``) is
    False count nowhere."""
    torch._check(y.shape == x.shape, lambda: f"medloss::sigmoid_stats: y {list(y.shape)} vs x {list(x.shape)}")
    xv, yv, m = _sigmoid_views(x, y, valid)
    p = torch.sigmoid(xv)
    if m is not None:
        p = p * m
        yv = yv * m
    return torch.stack([(p * yv).sum(-1), p.sum(-1), yv.sum(-1)], 1)


@sigmoid_stats.register_fake
def _(x, y, valid):
    return x.new_empty(x.shape[0], 3, x.shape[1])


@torch.library.custom_op("medloss::sigmoid_stats_backward", mutates_args=())
def sigmoid_stats_backward(x: Tensor, y: Tensor, valid: Tensor | None, g_tp: Tensor, g_sum_p: Tensor) -> Tensor:
    """Gradient of ``sigmoid_stats``: ``p (1 - p) (y dL/dTP + dL/dsum_p)`` at counted positions, with
    ``1 - p`` as ``sigmoid(-x)``: a saturated prediction (``p`` rounds to 1 in fp32 past x ~ 17) keeps its gradient."""
    xv, yv, m = _sigmoid_views(x, y, valid)
    grad = (yv * g_tp.to(x.dtype).unsqueeze(-1)).add_(g_sum_p.to(x.dtype).unsqueeze(-1))
    if m is not None:
        grad.mul_(m)
    return grad.mul_(torch.sigmoid(xv)).mul_(torch.sigmoid(-xv)).view_as(x)


@sigmoid_stats_backward.register_fake
def _(x, y, valid, g_tp, g_sum_p):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _sigmoid_stats_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _sigmoid_stats_grad(ctx, g_stats):
    x, y, valid = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: differentiate the defining formula
        from .losses._common import second_order_grads

        (grad,) = second_order_grads(lambda x_: sigmoid_stats_reference(x_, y, valid), (x,), (g_stats,))
    else:
        grad = sigmoid_stats_backward(x, y, valid, g_stats.select(1, 0).contiguous(), g_stats.select(1, 1).contiguous())
    return grad, None, None


sigmoid_stats.register_autograd(_sigmoid_stats_grad, setup_context=_sigmoid_stats_setup)


# ------------------------------------------------------------------------------ sigmoid focal op
def _sigmoid_focal_weights(x: Tensor, y: Tensor, valid: Tensor | None, a_pos: Tensor, a_neg: Tensor,
                           label_smoothing: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x, c_pos, c_neg)`` as ``[B, C, N]``: the weights of ``log p`` and ``log (1 - p)`` at each
    element (alpha, the soft label after PyTorch's smoothing with K = 2, and the mask)."""
    xv, yv, m = _sigmoid_views(x, y, valid)
    if label_smoothing:
        yv = yv * (1.0 - label_smoothing) + 0.5 * label_smoothing
    c_pos = yv * a_pos.to(x.dtype).view(1, -1, 1)
    c_neg = (1.0 - yv) * a_neg.to(x.dtype).view(1, -1, 1)
    if m is not None:
        c_pos, c_neg = c_pos * m, c_neg * m
    return xv, c_pos, c_neg, yv


def sigmoid_focal_reference(x: Tensor, y: Tensor, valid: Tensor | None, a_pos: Tensor, a_neg: Tensor, gamma: float,
                            label_smoothing: float, per_position: bool) -> Tensor:
    """The defining formula of ``sigmoid_focal`` in plain differentiable operations (second derivatives)."""
    from .losses._common import focal_modulated_log

    xv, c_pos, c_neg, _ = _sigmoid_focal_weights(x, y, valid, a_pos, a_neg, label_smoothing)
    raw = c_pos * focal_modulated_log(F.logsigmoid(xv), gamma) + c_neg * focal_modulated_log(F.logsigmoid(-xv), gamma)
    return raw.view_as(x) if per_position else raw.sum()


@torch.library.custom_op("medloss::sigmoid_focal", mutates_args=())
def sigmoid_focal(
    x: Tensor,
    y: Tensor,
    valid: Tensor | None,
    a_pos: Tensor,
    a_neg: Tensor,
    gamma: float,
    label_smoothing: float,
    per_position: bool,
) -> Tensor:
    """Sigmoid focal loss ``-a_pos y (1 - p)^gamma log p - a_neg (1 - y) p^gamma log(1 - p)`` per
    element (``a_pos`` / ``a_neg`` per channel ``[C]`` or ``[1]``; positions where ``valid`` is
    False count nowhere), or its sum when not ``per_position``."""
    from .losses._common import focal_terms

    torch._check(y.shape == x.shape, lambda: f"medloss::sigmoid_focal: y {list(y.shape)} vs x {list(x.shape)}")
    xv, c_pos, c_neg, _ = _sigmoid_focal_weights(x, y, valid, a_pos, a_neg, label_smoothing)
    value_pos, _ = focal_terms(F.logsigmoid(xv), gamma)
    value_neg, _ = focal_terms(F.logsigmoid(-xv), gamma)
    raw = (c_pos * value_pos).add_(c_neg * value_neg)
    return raw.view_as(x) if per_position else raw.sum()


@sigmoid_focal.register_fake
def _(x, y, valid, a_pos, a_neg, gamma, label_smoothing, per_position):
    return torch.empty_like(x) if per_position else x.new_empty(())


@torch.library.custom_op("medloss::sigmoid_focal_backward", mutates_args=())
def sigmoid_focal_backward(
    x: Tensor,
    y: Tensor,
    valid: Tensor | None,
    a_pos: Tensor,
    a_neg: Tensor,
    gamma: float,
    label_smoothing: float,
    grad_out: Tensor,
) -> Tensor:
    """Gradient of ``sigmoid_focal``: ``(c_neg slope_neg) p - (c_pos slope_pos) (1 - p)``, times ``grad_out``."""
    from .losses._common import focal_terms

    xv, c_pos, c_neg, _ = _sigmoid_focal_weights(x, y, valid, a_pos, a_neg, label_smoothing)
    log_p = F.logsigmoid(xv)
    log_q = F.logsigmoid(-xv)
    _, slope_pos = focal_terms(log_p, gamma)
    _, slope_neg = focal_terms(log_q, gamma)
    # d/dx log p = 1 - p = q, d/dx log q = -p
    grad = (c_neg * slope_neg).mul_(log_p.exp_()).sub_((c_pos * slope_pos).mul_(log_q.exp_()))
    g = grad_out.to(x.dtype)
    return grad.mul_(g.reshape(xv.shape) if g.dim() else g).view_as(x)


@sigmoid_focal_backward.register_fake
def _(x, y, valid, a_pos, a_neg, gamma, label_smoothing, grad_out):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _sigmoid_focal_setup(ctx, inputs, output):
    x, y, valid, a_pos, a_neg, gamma, label_smoothing, per_position = inputs
    ctx.args = (gamma, label_smoothing)
    ctx.save_for_backward(x, y, valid, a_pos, a_neg)


def _sigmoid_focal_grad(ctx, grad_out):
    x, y, valid, a_pos, a_neg = ctx.saved_tensors
    gamma, label_smoothing = ctx.args
    if torch.is_grad_enabled():  # create_graph=True: differentiate the defining formula
        from .losses._common import second_order_grads

        def reference(x_: Tensor) -> Tensor:
            return sigmoid_focal_reference(x_, y, valid, a_pos, a_neg, gamma, label_smoothing, grad_out.dim() > 0)

        (grad,) = second_order_grads(reference, (x,), (grad_out,))
    else:
        grad = sigmoid_focal_backward(x, y, valid, a_pos, a_neg, gamma, label_smoothing, grad_out)
    return grad, None, None, None, None, None, None, None


sigmoid_focal.register_autograd(_sigmoid_focal_grad, setup_context=_sigmoid_focal_setup)


# ------------------------------------------------------------------ cumulative link (logit) NLL
def _class_sum(y: Tensor, weights: Tensor, size: int) -> Tensor:
    """Per-class sums of ``weights`` over labels ``y`` ``[size]``: ``bincount`` on CPU (~10x faster
    than autograd's scatter for 10^6 samples), ``index_add_`` into fixed-size zeros elsewhere
    (``bincount``'s output size depends on the data: CUDA reads the maximum on the host)."""
    if y.device.type == "cpu":
        return torch.bincount(y, weights=weights, minlength=size).to(weights.dtype)
    return torch.zeros(size, dtype=weights.dtype, device=y.device).index_add_(0, y, weights)


@torch.library.custom_op("medloss::logit_link_nll", mutates_args=())
def logit_link_nll(f: Tensor, cutpoints_ext: Tensor, log_width: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample NLL of the logit cumulative link model ``[B]``, and ``sigmoid(a)``, ``sigmoid(-b)``
    (``[B]`` each: the backward's two factors, kept instead of recomputed; not differentiable).

    ``cutpoints_ext`` is ``[-inf, c_1, ..., c_{K-1}, +inf]`` and ``log_width`` the per-class
    ``log(1 - exp(-(c_{k+1} - c_k)))`` (0 for the open first and last classes). With
    ``a = c_y - f`` and ``b = c_{y+1} - f``, ``nll = -logsigmoid(b) - logsigmoid(-a) - log_width[y]``;
    the infinite ends make the open-interval terms vanish exactly. ``y`` holds grades in ``[0, K)``.
    """
    a = cutpoints_ext.gather(0, y).sub_(f)
    b = cutpoints_ext.gather(0, y + 1).sub_(f)
    nll = F.logsigmoid(b).add_(F.logsigmoid(-a)).add_(log_width.gather(0, y)).neg_()
    return nll, torch.sigmoid(a), torch.sigmoid(b.neg_())


@logit_link_nll.register_fake
def _(f, cutpoints_ext, log_width, y):
    return torch.empty_like(f), torch.empty_like(f), torch.empty_like(f)


@torch.library.custom_op("medloss::logit_link_nll_backward", mutates_args=())
def logit_link_nll_backward(
    sig_a: Tensor, sig_neg_b: Tensor, y: Tensor, n_cutpoints: int, grad: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of ``logit_link_nll`` for the scores ``[B]``, the cutpoints ``[K + 1]`` and the
    log-widths ``[K]``: ``d nll / d a = sigmoid(a)``, ``d nll / d b = -sigmoid(-b)``, summed per class
    for the cutpoints."""
    ga, gb = grad * sig_a, grad * sig_neg_b
    grad_c = _class_sum(y, ga, n_cutpoints) - _class_sum(y + 1, gb, n_cutpoints)
    return gb - ga, grad_c, -_class_sum(y, grad, n_cutpoints - 1)


@logit_link_nll_backward.register_fake
def _(sig_a, sig_neg_b, y, n_cutpoints, grad):
    return torch.empty_like(grad), grad.new_empty(n_cutpoints), grad.new_empty(n_cutpoints - 1)


def _logit_link_setup(ctx, inputs, output):
    ctx.mark_non_differentiable(output[1], output[2])
    ctx.save_for_backward(*inputs, output[1], output[2])


def _logit_link_grad(ctx, grad, _g_sig_a, _g_sig_neg_b):
    f, cutpoints_ext, log_width, y, sig_a, sig_neg_b = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: differentiate the defining formula
        from .losses._common import second_order_grads

        def reference(f_: Tensor, c_: Tensor, w_: Tensor) -> Tensor:
            a = c_.gather(0, y) - f_
            b = c_.gather(0, y + 1) - f_
            return -(F.logsigmoid(b) + F.logsigmoid(-a) + w_.gather(0, y))

        return (*second_order_grads(reference, (f, cutpoints_ext, log_width), (grad,)), None)
    grad_f, grad_c, grad_w = logit_link_nll_backward(sig_a, sig_neg_b, y, cutpoints_ext.shape[0], grad)
    return grad_f, grad_c.to(cutpoints_ext.dtype), grad_w.to(log_width.dtype), None


logit_link_nll.register_autograd(_logit_link_grad, setup_context=_logit_link_setup)
