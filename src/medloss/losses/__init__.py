"""Losses for imbalanced and ordinal labels. Every loss is an ``nn.Module`` with a functional twin.

Shared conventions (see the README): ``forward(input, target)`` with logits unless
``from_logits=False``; ``mode`` "binary" / "multiclass" / "multilabel"; ``reduction`` "mean" /
"sum" / "none"; ``ignore_index`` positions count nowhere; errors name the argument.
"""

from .calibrating import (
    DCALoss,
    FocalLossAdaptive,
    MarginLabelSmoothingLoss,
    MDCALoss,
    NeighborAwareCalibrationLoss,
    SpatiallyVaryingLabelSmoothingLoss,
    dca_loss,
    focal_loss_adaptive,
    margin_label_smoothing_loss,
    mdca_loss,
    neighbor_aware_calibration_loss,
    spatially_varying_label_smoothing_loss,
)
from .class_weights import class_weights
from .combined import CombinedLoss, combined_loss, parse_loss_spec
from .focal import CrossEntropyLoss, FocalLoss, cross_entropy_loss, focal_loss, prior_bias
from .functional import (
    asymmetric_focal_loss,
    asymmetric_focal_tversky_loss,
    asymmetric_unified_focal_loss,
    cdw_ce_loss,
    combo_loss,
    coral_loss,
    corn_loss,
    cumulative_link_loss,
    dice_loss,
    focal_tversky_loss,
    generalized_dice_loss,
    hybrid_focal_loss,
    jaccard_loss,
    mcc_loss,
    squared_emd_loss,
    symmetric_focal_loss,
    symmetric_focal_tversky_loss,
    symmetric_unified_focal_loss,
    tversky_loss,
)
from .giou import GIoULoss, generalized_box_iou, giou_loss
from .ordinal import CDWCELoss, CORALLoss, CORNLoss, CumulativeLinkLoss, SquaredEMDLoss
from .overlap import (
    ComboLoss,
    DiceLoss,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    JaccardLoss,
    MCCLoss,
    TverskyLoss,
    segmentation_statistics,
)
from .registry import LossEntry, available_losses, get_loss, register_loss
from .soft_f1 import SoftF1Loss, soft_f1_loss
from .unified_focal import (
    AsymmetricFocalLoss,
    AsymmetricFocalTverskyLoss,
    AsymmetricUnifiedFocalLoss,
    HybridFocalLoss,
    SymmetricFocalLoss,
    SymmetricFocalTverskyLoss,
    SymmetricUnifiedFocalLoss,
)

register_loss(
    "ce",
    CrossEntropyLoss,
    "Cross-entropy (softmax or sigmoid by mode); class weights as F.cross_entropy(weight=...).",
    tasks=("classification", "segmentation"),
    weight_arg="weight",
)
register_loss(
    "focal",
    FocalLoss,
    "Focal loss -alpha_t (1-p_t)^gamma log p_t (Lin et al. 2017); binary/multiclass/multilabel.",
    tasks=("classification", "segmentation"),
    weight_arg="weight",
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
    weight_arg="weight",
    output="score",
)
register_loss(
    "cdw_ce",
    CDWCELoss,
    "Class-distance weighted CE (Polat et al. 2022): wrong grades penalised by |k - y|^alpha.",
    tasks=("ordinal",),
    weight_arg="weight",
)
register_loss(
    "emd",
    SquaredEMDLoss,
    "Squared earth mover's distance between predicted and true grade CDFs (Hou et al. 2016).",
    tasks=("ordinal",),
)
register_loss(
    "coral",
    CORALLoss,
    "CORAL: K - 1 binary tasks P(y > k), rank-consistent with a shared score (Cao et al. 2020).",
    tasks=("ordinal",),
    output="coral_logits",
)
register_loss(
    "corn",
    CORNLoss,
    "CORN conditional binary tasks, rank-consistent (Shi et al. 2023); K - 1 outputs.",
    tasks=("ordinal",),
    output="conditional_logits",
)
register_loss(
    "dice",
    DiceLoss,
    "Soft Dice 1 - (2TP+s)/(2TP+FP+FN+s) per class (Milletari et al. 2016).",
    tasks=("segmentation",),
    weight_arg="weight",
)
register_loss(
    "generalized_dice",
    GeneralizedDiceLoss,
    "Generalized Dice: classes weighted by 1/volume^2 (Sudre et al. 2017).",
    tasks=("segmentation",),
)
register_loss(
    "jaccard",
    JaccardLoss,
    "Soft Jaccard (IoU) 1 - (TP+s)/(TP+FP+FN+s) per class.",
    tasks=("segmentation",),
    weight_arg="weight",
)
register_loss(
    "mcc",
    MCCLoss,
    "1 - soft Matthews correlation per class (Abhishek & Hamarneh 2021).",
    tasks=("segmentation",),
    weight_arg="weight",
)
register_loss(
    "tversky",
    TverskyLoss,
    "Tversky 1 - TP/(TP + a FP + b FN), a=0.3 b=0.7 (Salehi et al. 2017).",
    tasks=("segmentation",),
    weight_arg="weight",
)
register_loss(
    "focal_tversky",
    FocalTverskyLoss,
    "(1 - Tversky index)^0.75 per class (Abraham & Khan 2019).",
    tasks=("segmentation",),
    weight_arg="weight",
)
register_loss(
    "combo",
    ComboLoss,
    "alpha * weighted CE - (1 - alpha) * Dice (Taghanaki et al. 2019).",
    tasks=("segmentation",),
)
register_loss(
    "symmetric_focal",
    SymmetricFocalLoss,
    "Unified-family focal term, delta-weighted, focal on all classes (Yeung 2022).",
    tasks=("segmentation",),
)
register_loss(
    "asymmetric_focal",
    AsymmetricFocalLoss,
    "Unified-family focal term, focal factor on the background only (Yeung 2022).",
    tasks=("segmentation",),
)
register_loss(
    "symmetric_focal_tversky",
    SymmetricFocalTverskyLoss,
    "Unified-family (1 - mTI)^(1-gamma) on every class (Yeung 2022).",
    tasks=("segmentation",),
)
register_loss(
    "asymmetric_focal_tversky",
    AsymmetricFocalTverskyLoss,
    "Unified-family focal Tversky, background unmodulated (Yeung 2022).",
    tasks=("segmentation",),
)
register_loss(
    "symmetric_unified_focal",
    SymmetricUnifiedFocalLoss,
    "Symmetric Unified Focal: lambda FT + (1-lambda) focal (Yeung et al. 2022).",
    tasks=("segmentation",),
)
register_loss(
    "asymmetric_unified_focal",
    AsymmetricUnifiedFocalLoss,
    "Asymmetric Unified Focal: lambda FT + (1-lambda) focal (Yeung et al. 2022).",
    tasks=("segmentation",),
)
register_loss(
    "hybrid_focal",
    HybridFocalLoss,
    "lambda focal + (1-lambda) focal Tversky, own parameters (Yeung et al. 2021).",
    tasks=("segmentation",),
    weight_arg="weight",
)

register_loss(
    "focal_adaptive",
    FocalLossAdaptive,
    "FLSD-53: focal loss with gamma 5 where p_t < 0.2, else 3 (Mukhoti et al. 2020); trains calibrated.",
    tasks=("classification", "segmentation"),
    weight_arg="weight",
)
register_loss(
    "mdca",
    MDCALoss,
    "CE + beta x mean over classes of |batch mean p_k - label frequency| (Hebbalaguppe et al. 2022).",
    tasks=("classification", "segmentation"),
    weight_arg="weight",
)
register_loss(
    "dca",
    DCALoss,
    "CE + beta x |batch mean confidence - accuracy| (Liang et al. 2020, medical images).",
    tasks=("classification", "segmentation"),
    weight_arg="weight",
)
register_loss(
    "mbls",
    MarginLabelSmoothingLoss,
    "Margin-based label smoothing: CE + lambda x hinge on logit distances beyond a margin (Liu et al. 2022).",
    tasks=("classification", "segmentation"),
    weight_arg="weight",
)
register_loss(
    "svls",
    SpatiallyVaryingLabelSmoothingLoss,
    "CE against the mask smoothed over each pixel's 3^d neighbourhood (Islam & Glocker 2021); 2-D and 3-D.",
    tasks=("segmentation",),
    weight_arg="weight",
)
register_loss(
    "nacl",
    NeighborAwareCalibrationLoss,
    "CE + lambda x |softmax - neighbourhood label shares| per pixel (Murugesan et al. 2023); 2-D and 3-D.",
    tasks=("segmentation",),
    weight_arg="weight",
)

__all__ = [
    "AsymmetricFocalLoss",
    "AsymmetricFocalTverskyLoss",
    "AsymmetricUnifiedFocalLoss",
    "CDWCELoss",
    "CORALLoss",
    "CORNLoss",
    "CombinedLoss",
    "ComboLoss",
    "CrossEntropyLoss",
    "CumulativeLinkLoss",
    "DCALoss",
    "DiceLoss",
    "FocalLoss",
    "FocalLossAdaptive",
    "FocalTverskyLoss",
    "GIoULoss",
    "GeneralizedDiceLoss",
    "HybridFocalLoss",
    "JaccardLoss",
    "LossEntry",
    "MCCLoss",
    "MDCALoss",
    "MarginLabelSmoothingLoss",
    "NeighborAwareCalibrationLoss",
    "SoftF1Loss",
    "SpatiallyVaryingLabelSmoothingLoss",
    "SquaredEMDLoss",
    "SymmetricFocalLoss",
    "SymmetricFocalTverskyLoss",
    "SymmetricUnifiedFocalLoss",
    "TverskyLoss",
    "asymmetric_focal_loss",
    "asymmetric_focal_tversky_loss",
    "asymmetric_unified_focal_loss",
    "available_losses",
    "cdw_ce_loss",
    "class_weights",
    "combined_loss",
    "combo_loss",
    "coral_loss",
    "corn_loss",
    "cross_entropy_loss",
    "cumulative_link_loss",
    "dca_loss",
    "dice_loss",
    "focal_loss",
    "focal_loss_adaptive",
    "focal_tversky_loss",
    "generalized_box_iou",
    "generalized_dice_loss",
    "get_loss",
    "giou_loss",
    "hybrid_focal_loss",
    "jaccard_loss",
    "margin_label_smoothing_loss",
    "mcc_loss",
    "mdca_loss",
    "neighbor_aware_calibration_loss",
    "parse_loss_spec",
    "prior_bias",
    "register_loss",
    "segmentation_statistics",
    "soft_f1_loss",
    "spatially_varying_label_smoothing_loss",
    "squared_emd_loss",
    "symmetric_focal_loss",
    "symmetric_focal_tversky_loss",
    "symmetric_unified_focal_loss",
    "tversky_loss",
]
