"""The functional twins are plain functions: no module is built per call, and they take the classes' options."""

import pytest
import torch
from torch import nn

from medloss.losses import functional

_IMAGES = (torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(0)),
           torch.randint(0, 3, (2, 5, 5), generator=torch.Generator().manual_seed(1)))
_GRADES = torch.tensor([0, 1, 2, 1, 0, 2])
_CALLS = {
    "cdw_ce_loss": lambda f: f(torch.randn(6, 3), _GRADES, 3),
    "squared_emd_loss": lambda f: f(torch.randn(6, 3), _GRADES, 3),
    "coral_loss": lambda f: f(torch.randn(6, 2), _GRADES, 3),
    "corn_loss": lambda f: f(torch.randn(6, 2), _GRADES, 3),
    "cumulative_link_loss": lambda f: f(torch.randn(6), _GRADES, 3),
    "giou_loss": lambda f: f(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 1.0, 3.0, 3.0]])),
    "soft_f1_loss": lambda f: f(*_IMAGES, mode="multiclass"),
    "combined_loss": lambda f: f(*_IMAGES, {"dice": functional.dice_loss, "focal": (functional.focal_loss, 0.5)}),
}


@pytest.mark.parametrize("name", functional.__all__)
def test_a_twin_builds_no_module(monkeypatch, name):
    built = []
    real = nn.Module.__init__

    def counting(self, *args, **kwargs):
        built.append(type(self).__name__)
        real(self, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "__init__", counting)
    value = _CALLS.get(name, lambda f: f(*_IMAGES))(getattr(functional, name))
    assert torch.isfinite(value).all()
    assert built == [], f"{name} built {built}"


def test_twins_take_the_region_options():
    """weight, include_background and reduction reach the twin's computation: the per-class values of
    reduction="none" give the weighted and the background-free means by hand."""
    x, t = _IMAGES
    per_class = functional.dice_loss(x, t, reduction="none")  # [B, C]
    w = torch.tensor([0.2, 1.0, 3.0])
    weighted = functional.dice_loss(x, t, weight=w)
    torch.testing.assert_close(weighted, (per_class * w).sum() / (w.sum() * 2))
    torch.testing.assert_close(functional.dice_loss(x, t, include_background=False), per_class[:, 1:].mean())
    with pytest.raises(ValueError, match="`reduction` must be one of"):
        functional.tversky_loss(x, t, reduction="avg")
    with pytest.raises(TypeError, match="unexpected keyword argument 'alpha'"):
        functional.dice_loss(x, t, alpha=0.3)
