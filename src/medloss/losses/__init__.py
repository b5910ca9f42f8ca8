"""Losses for imbalanced and ordinal labels. Every loss is an ``nn.Module`` with a functional twin.

Shared conventions (see the README): ``forward(input, target)`` with logits unless
``from_logits=False``; ``mode`` "binary" / "multiclass" / "multilabel"; ``reduction`` "mean" /
"sum" / "none"; ``ignore_index`` positions count nowhere; errors name the argument.
"""

from .class_weights import class_weights
from .combined import CombinedLoss, parse_loss_spec
from .focal import FocalLoss, cross_entropy_loss, focal_loss
from .giou import GIoULoss, generalized_box_iou, giou_loss
from .ordinal import CDWCELoss, CORNLoss, CumulativeLinkLoss, SquaredEMDLoss
from .registry import LossEntry, available_losses, get_loss, register_loss
from .soft_f1 import SoftF1Loss, soft_f1_loss

register_loss(
    "ce",
    cross_entropy_loss,
    "Cross-entropy (softmax or sigmoid by mode); class weights as F.cross_entropy(weight=...).",
    tasks=("classification", "segmentation"),
    weight_arg="weight",
)
register_loss(
    "focal",
    FocalLoss,
    "Focal loss -alpha_t (1-p_t)^gamma log p_t (Lin et al. 2017); binary/multiclass/multilabel.",
    tasks=("classification", "segmentation"),
    weight_arg="alpha",
)
register_loss(
    "soft_f1",
    SoftF1Loss,
    "1 - soft F1 over the batch, macro-averaged over classes (differentiable F1 surrogate).",
    tasks=("classification", "segmentation"),
)
register_loss(
    "giou",
    GIoULoss,
    "1 - generalized IoU of (x1, y1, x2, y2) boxes (Rezatofighi et al. 2019).",
    tasks=("detection",),
)
register_loss(
    "cumulative_link",
    CumulativeLinkLoss,
    "Cumulative link (proportional odds) NLL with ordered cutpoints; one score per sample.",
    tasks=("ordinal",),
    weight_arg="class_weights",
    output="score",
)
register_loss(
    "cdw_ce",
    CDWCELoss,
    "Class-distance weighted CE (Polat et al. 2022): wrong grades penalised by |k - y|^alpha.",
    tasks=("ordinal",),
)
register_loss(
    "emd",
    SquaredEMDLoss,
    "Squared earth mover's distance between predicted and true grade CDFs (Hou et al. 2016).",
    tasks=("ordinal",),
)
register_loss(
    "corn",
    CORNLoss,
    "CORN conditional binary tasks, rank-consistent (Shi et al. 2023); K - 1 outputs.",
    tasks=("ordinal",),
    output="conditional_logits",
)

__all__ = [
    "CDWCELoss",
    "CORNLoss",
    "CumulativeLinkLoss",
    "SquaredEMDLoss",
    "CombinedLoss",
    "FocalLoss",
    "GIoULoss",
    "LossEntry",
    "SoftF1Loss",
    "available_losses",
    "class_weights",
    "cross_entropy_loss",
    "focal_loss",
    "generalized_box_iou",
    "get_loss",
    "giou_loss",
    "parse_loss_spec",
    "register_loss",
    "soft_f1_loss",
]
