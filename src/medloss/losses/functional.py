"""The functional twins of the loss modules, in one namespace (as ``torch.nn.functional``).

Each is a plain function defined beside its class (``dice_loss`` in :mod:`medloss.losses.overlap`): it
checks its options and computes the loss, without building a module. The class stores the validated
options (and its buffers and parameters, e.g. the learned cutpoints of :class:`CumulativeLinkLoss`) and
calls the same computation, so in a training loop a module checks its options once.
"""

from __future__ import annotations

from .calibrating import (
    dca_loss,
    focal_loss_adaptive,
    margin_label_smoothing_loss,
    mdca_loss,
    neighbor_aware_calibration_loss,
    spatially_varying_label_smoothing_loss,
)
from .combined import combined_loss
from .focal import cross_entropy_loss, focal_loss
from .giou import giou_loss
from .ordinal import cdw_ce_loss, coral_loss, corn_loss, cumulative_link_loss, squared_emd_loss
from .overlap import (
    combo_loss,
    dice_loss,
    focal_tversky_loss,
    generalized_dice_loss,
    jaccard_loss,
    mcc_loss,
    tversky_loss,
)
from .soft_f1 import soft_f1_loss
from .unified_focal import (
    asymmetric_focal_loss,
    asymmetric_focal_tversky_loss,
    asymmetric_unified_focal_loss,
    hybrid_focal_loss,
    symmetric_focal_loss,
    symmetric_focal_tversky_loss,
    symmetric_unified_focal_loss,
)

__all__ = [
    "asymmetric_focal_loss",
    "asymmetric_focal_tversky_loss",
    "asymmetric_unified_focal_loss",
    "cdw_ce_loss",
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
    "generalized_dice_loss",
    "giou_loss",
    "hybrid_focal_loss",
    "jaccard_loss",
    "margin_label_smoothing_loss",
    "mcc_loss",
    "mdca_loss",
    "neighbor_aware_calibration_loss",
    "soft_f1_loss",
    "spatially_varying_label_smoothing_loss",
    "squared_emd_loss",
    "symmetric_focal_loss",
    "symmetric_focal_tversky_loss",
    "symmetric_unified_focal_loss",
    "tversky_loss",
]
