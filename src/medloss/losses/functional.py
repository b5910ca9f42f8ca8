"""Functional twins of the loss modules: ``dice_loss(input, target, **kwargs)`` is
``DiceLoss(**kwargs)(input, target)``.

Each twin builds its module from the keyword arguments and applies it once, so the arguments,
defaults, checks and errors are the module's own (its docstring says what they mean). In a
training loop keep a module instead: it validates its arguments once, holds its buffers on the
model's device and, for :class:`~medloss.losses.CumulativeLinkLoss`, its learned cutpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .ordinal import CDWCELoss, CORALLoss, CORNLoss, CumulativeLinkLoss, SquaredEMDLoss
from .overlap import (
    ComboLoss,
    DiceLoss,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    JaccardLoss,
    MCCLoss,
    TverskyLoss,
)
from .unified_focal import (
    AsymmetricFocalLoss,
    AsymmetricFocalTverskyLoss,
    AsymmetricUnifiedFocalLoss,
    HybridFocalLoss,
    SymmetricFocalLoss,
    SymmetricFocalTverskyLoss,
    SymmetricUnifiedFocalLoss,
)

#: example inputs of the docstrings: segmentation logits [2, 3, 4, 4] with class indices, or K = 3 grades
_IMAGES = ">>> x, t = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))"
_GRADES = ">>> t = torch.tensor([0, 1, 2, 1, 0, 2])"


def _twin(cls: type[nn.Module], name: str, example: str = _IMAGES, args: str = "") -> Callable[..., torch.Tensor]:
    def loss(input: torch.Tensor, target: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return cls(**kwargs)(input, target)

    loss.__name__ = loss.__qualname__ = name
    loss.module_class = cls  # type: ignore[attr-defined]  # which module it wraps (tests, docs)
    loss.__doc__ = (
        f"Functional twin of :class:`~medloss.losses.{cls.__name__}`: ``{name}(input, target, **kwargs)`` "
        f"= ``{cls.__name__}(**kwargs)(input, target)`` (same arguments, defaults and errors).\n\n"
        f"Examples:\n    {example}\n"
        f"    >>> torch.equal({name}(x, t{', ' + args if args else ''}), {cls.__name__}({args})(x, t))\n    True\n"
    )
    return loss


dice_loss = _twin(DiceLoss, "dice_loss")
jaccard_loss = _twin(JaccardLoss, "jaccard_loss")
generalized_dice_loss = _twin(GeneralizedDiceLoss, "generalized_dice_loss")
mcc_loss = _twin(MCCLoss, "mcc_loss")
tversky_loss = _twin(TverskyLoss, "tversky_loss")
focal_tversky_loss = _twin(FocalTverskyLoss, "focal_tversky_loss")
combo_loss = _twin(ComboLoss, "combo_loss")
symmetric_focal_loss = _twin(SymmetricFocalLoss, "symmetric_focal_loss")
asymmetric_focal_loss = _twin(AsymmetricFocalLoss, "asymmetric_focal_loss")
symmetric_focal_tversky_loss = _twin(SymmetricFocalTverskyLoss, "symmetric_focal_tversky_loss")
asymmetric_focal_tversky_loss = _twin(AsymmetricFocalTverskyLoss, "asymmetric_focal_tversky_loss")
symmetric_unified_focal_loss = _twin(SymmetricUnifiedFocalLoss, "symmetric_unified_focal_loss")
asymmetric_unified_focal_loss = _twin(AsymmetricUnifiedFocalLoss, "asymmetric_unified_focal_loss")
hybrid_focal_loss = _twin(HybridFocalLoss, "hybrid_focal_loss")
cumulative_link_loss = _twin(CumulativeLinkLoss, "cumulative_link_loss",
                             _GRADES + "\n    >>> x = torch.randn(6, 1)", "num_classes=3")
cdw_ce_loss = _twin(CDWCELoss, "cdw_ce_loss", _GRADES + "\n    >>> x = torch.randn(6, 3)", "num_classes=3")
squared_emd_loss = _twin(SquaredEMDLoss, "squared_emd_loss", _GRADES + "\n    >>> x = torch.randn(6, 3)",
                         "num_classes=3")
corn_loss = _twin(CORNLoss, "corn_loss", _GRADES + "\n    >>> x = torch.randn(6, 2)", "num_classes=3")
coral_loss = _twin(CORALLoss, "coral_loss", _GRADES + "\n    >>> x = torch.randn(6, 2)", "num_classes=3")

__all__ = [
    "asymmetric_focal_loss",
    "asymmetric_focal_tversky_loss",
    "asymmetric_unified_focal_loss",
    "cdw_ce_loss",
    "combo_loss",
    "coral_loss",
    "corn_loss",
    "cumulative_link_loss",
    "dice_loss",
    "focal_tversky_loss",
    "generalized_dice_loss",
    "hybrid_focal_loss",
    "jaccard_loss",
    "mcc_loss",
    "squared_emd_loss",
    "symmetric_focal_loss",
    "symmetric_focal_tversky_loss",
    "symmetric_unified_focal_loss",
    "tversky_loss",
]
