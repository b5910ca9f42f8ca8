"""Every registered loss takes ``reduction="mean" | "sum" | "none"``: "none" is batch first (per pixel for
pixel-wise losses, per image and class for region losses, per image for region + pixel losses, per sample for
classification / ordinal / box losses) and "sum" is the sum of its values. Soft-F1 pools the whole batch (F1 is
not a per-sample quantity): its "none" is per class."""

import pytest
import torch

from medloss.losses import available_losses, get_loss


def _inputs(entry):
    g = torch.Generator().manual_seed(0)
    if entry.output == "score":
        return torch.randn(6, 1, generator=g, dtype=torch.float64), torch.randint(0, 3, (6,), generator=g)
    if entry.n_outputs(3) == 2 or "ordinal" in entry.tasks:
        width = entry.n_outputs(3)
        return torch.randn(6, width, generator=g, dtype=torch.float64), torch.randint(0, 3, (6,), generator=g)
    if "detection" in entry.tasks:
        corner = torch.rand(6, 2, generator=g, dtype=torch.float64)
        box = torch.cat([corner, corner + 0.5 + torch.rand(6, 2, generator=g, dtype=torch.float64)], 1)
        return box, box + 0.1 * torch.rand(6, 4, generator=g, dtype=torch.float64)
    return torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (2, 5, 5), generator=g)


@pytest.mark.parametrize("entry", available_losses(), ids=lambda e: e.name)
def test_every_loss_takes_every_reduction(entry):
    x, t = _inputs(entry)
    kwargs = {"mode": "multiclass"} if entry.accepts("mode") else {}
    if "ordinal" in entry.tasks:
        kwargs = {"num_classes": 3}
    values = {r: get_loss(entry.name, reduction=r, **kwargs)(x, t) for r in ("mean", "sum", "none")}
    assert values["mean"].shape == values["sum"].shape == ()
    if entry.name == "soft_f1":
        assert values["none"].shape == (3,)
    else:
        assert values["none"].shape[0] == x.shape[0], values["none"].shape
    assert values["sum"].item() == pytest.approx(values["none"].sum().item(), rel=1e-12, abs=1e-12)
