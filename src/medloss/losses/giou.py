"""Generalized IoU loss for axis-aligned boxes."""

from __future__ import annotations

import torch
from torch import nn

from .._distributed import distributed_flag, require_process_group
from .._validation import (
    check_finite,
    check_number,
    check_reduction,
    fmt_shape,
    value_checks_active,
)
from ._common import fp32_island
from .focal import _finish_reduction


def _check_boxes(boxes: torch.Tensor, name: str) -> None:
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise TypeError(f"`{name}` must hold real coordinates (integer or floating point); got dtype {boxes.dtype}")
    if boxes.ndim == 0 or boxes.shape[-1] != 4:
        raise ValueError(f"`{name}` must be boxes of shape [..., 4] as (x1, y1, x2, y2); got {fmt_shape(boxes.shape)}")
    check_finite(boxes, name)
    if not value_checks_active(boxes):
        return
    bad = (boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1])
    if bool(bad.any()):
        first = torch.nonzero(bad)[0].tolist()
        raise ValueError(
            f"`{name}` has {int(bad.sum())} invalid box(es) with x2 < x1 or y2 < y1, first at index {first}: "
            f"{boxes[tuple(first)].tolist()}. Boxes must be (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2."
        )


def _upcast_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Integer and half-precision boxes -> float32 (as torchvision): areas of int16 boxes overflow
    and fp16 areas of boxes near 1000 exceed 65504; float32 / float64 stay as they are."""
    return boxes if boxes.dtype in (torch.float32, torch.float64) else boxes.float()


def generalized_box_iou(input: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Element-wise GIoU of paired boxes ``[..., 4]`` (x1, y1, x2, y2), in [-1, 1].

    Integer and fp16 / bf16 boxes are computed in float32 (the result's dtype); float64 stays float64.

    Args:
        input: boxes ``[..., 4]`` as ``(x1, y1, x2, y2)``.
        target: boxes of the same shape (or broadcastable to it).
        eps: added to the union and hull areas (default 1e-7).

    Returns:
        The GIoU of each pair, ``[...]``.

    Raises:
        RuntimeError: shapes that do not broadcast (PyTorch's error; :func:`giou_loss` checks its boxes).

    Examples:
        >>> a = torch.tensor([[0, 0, 2, 2]], dtype=torch.int16)
        >>> generalized_box_iou(a, torch.tensor([[1, 1, 3, 3]], dtype=torch.int16))
        tensor([-0.0794])
    """
    input, target = _upcast_boxes(input), _upcast_boxes(target)
    area_a = (input[..., 2] - input[..., 0]) * (input[..., 3] - input[..., 1])
    area_b = (target[..., 2] - target[..., 0]) * (target[..., 3] - target[..., 1])
    lt = torch.maximum(input[..., :2], target[..., :2])
    rb = torch.minimum(input[..., 2:], target[..., 2:])
    wh = (rb - lt).clamp_min(0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a + area_b - inter
    iou = inter / (union + eps)
    hull_wh = torch.maximum(input[..., 2:], target[..., 2:]) - torch.minimum(input[..., :2], target[..., :2])
    hull = hull_wh[..., 0] * hull_wh[..., 1]
    return iou - (hull - union) / (hull + eps)


def giou_loss(
    input: torch.Tensor, target: torch.Tensor, *, reduction: str = "mean", eps: float = 1e-7,
    distributed: bool = False,
) -> torch.Tensor:
    """``1 - GIoU`` of paired boxes: the functional form of :class:`GIoULoss`.

    Args:
        input: predicted boxes ``[..., 4]`` as ``(x1, y1, x2, y2)``.
        target: the matched true boxes, same shape.
        reduction, eps, distributed: as :class:`GIoULoss` (``eps`` guards the ratios of zero-area boxes; it
            is no smoothing term, as torchvision's ``eps``).

    Returns:
        The loss: a scalar for ``"mean"`` / ``"sum"``, the loss of each box pair ``[...]`` for ``"none"``.

    Raises:
        ValueError: boxes not ``[..., 4]``, ``x2 < x1`` or ``y2 < y1``, non-finite coordinates, ``input`` and
            ``target`` of different shapes, ``eps`` <= 0, an unknown ``reduction``.
        TypeError: boxes that are not tensors.
        RuntimeError: ``distributed=True`` outside an initialised process group.

    Examples:
        >>> giou_loss(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 1.0, 3.0, 3.0]]))  # 1 - (1/7 - 2/9)
        tensor(1.0794)
    """
    check_reduction(reduction)
    eps = check_number(eps, "eps", low=0.0, low_inclusive=False)
    _check_boxes(input, "input")
    _check_boxes(target, "target")
    if input.shape != target.shape:
        raise ValueError(
            f"`input` and `target` must hold the same boxes shape; got {fmt_shape(input.shape)} "
            f"and {fmt_shape(target.shape)}"
        )
    with fp32_island():
        loss = 1.0 - generalized_box_iou(input, target, eps)
    if reduction == "none":
        return loss
    if distributed:  # the mean / sum over every rank's boxes (a rank without boxes adds 0 of each)
        require_process_group("giou_loss")
        return _finish_reduction(loss.sum(), loss.new_tensor(float(loss.numel())), reduction, True, 1.0)
    if reduction == "mean" and input.numel() == 0:
        # no matched boxes (routine in detection): 0 with a zero gradient, as torchvision
        return loss.sum() * 0.0
    return loss.mean() if reduction == "mean" else loss.sum()


class GIoULoss(nn.Module):
    r"""Generalized IoU loss (Rezatofighi et al., "Generalized Intersection over Union", CVPR 2019).

    .. math:: \mathcal{L} = 1 - \mathrm{GIoU},\quad
        \mathrm{GIoU} = \frac{|A\cap B|}{|A\cup B|} - \frac{|C \setminus (A\cup B)|}{|C|}

    where ``C`` is the smallest box enclosing ``A`` and ``B``. The loss lies in [0, 2] and keeps a
    gradient when the boxes do not overlap.

    Boxes are ``[..., 4]`` as ``(x1, y1, x2, y2)``. A box with ``x2 < x1`` or ``y2 < y1`` is an
    error (torchvision silently returns losses below 0 for them). Degenerate boxes of zero area
    are allowed: ``eps`` (default 1e-7) keeps the ratios finite, so two identical zero-area boxes
    get loss 1. An empty batch (``[0, 4]``: no matched boxes) gives 0 with a zero gradient, as
    torchvision. Integer and fp16 / bf16 boxes are computed in float32.

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per box, shape ``[...]``).
        eps: added to the union and hull areas (default 1e-7).
        distributed: under ``torch.distributed`` (DDP), the mean / sum over every rank's boxes
            (default False: this rank's; ranks often hold different numbers of matched boxes); see
            ``docs/distributed.md``.

    Returns:
        The loss: a scalar for ``"mean"`` / ``"sum"``, the loss of each box pair ``[...]`` for ``"none"``.

    Raises:
        ValueError: boxes not ``[..., 4]``, ``x2 < x1`` or ``y2 < y1``, non-finite coordinates, ``input`` and
            ``target`` of different shapes, ``eps`` <= 0, an unknown ``reduction``.
        TypeError: boxes that are not tensors.
        RuntimeError: ``distributed=True`` outside an initialised process group.

    Examples:
        >>> a = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
        >>> b = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 2.0, 2.0]])  # identical; diagonal neighbours
        >>> GIoULoss(reduction="none")(a, b).round(decimals=4)
        tensor([0.0000, 1.5000])
    """

    def __init__(self, *, reduction: str = "mean", eps: float = 1e-7, distributed: bool = False) -> None:
        super().__init__()
        self.distributed = bool(distributed)
        self.reduction = check_reduction(reduction)
        self.eps = check_number(eps, "eps", low=0.0, low_inclusive=False)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        distributed_flag(self)  # the error names the module the user built
        return giou_loss(input, target, reduction=self.reduction, eps=self.eps, distributed=self.distributed)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, eps={self.eps}, distributed={self.distributed}"
