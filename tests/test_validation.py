"""Bad inputs raise ValueError/TypeError whose message names the argument and shows what was wrong."""

import numpy as np
import pytest
import torch

from medloss.losses import FocalLoss, SoftF1Loss, focal_loss, soft_f1_loss

x_mc = torch.randn(2, 3, 4, 4)
t_mc = torch.randint(0, 3, (2, 4, 4))
x_b = torch.randn(2, 1, 4, 4)
t_b = torch.randint(0, 2, (2, 1, 4, 4)).float()

BAD_CALLS = [
    # (description, call, exception, message pattern)
    ("label above range", lambda: focal_loss(x_mc, torch.full((2, 4, 4), 3)), ValueError, r"target.*\[0, 2\].*got values in \[3, 3\]"),
    ("negative label", lambda: focal_loss(x_mc, torch.full((2, 4, 4), -1)), ValueError, r"target.*got values in \[-1"),
    ("float class indices", lambda: focal_loss(x_mc, t_mc.float()), TypeError, r"target.*integer class indices.*float32"),
    ("target shape", lambda: focal_loss(x_mc, t_mc[:, :3]), ValueError, r"target.*\[2, 4, 4\].*got \[2, 3, 4\]"),
    ("integer logits", lambda: focal_loss(x_mc.long(), t_mc), TypeError, r"input.*floating-point.*int64"),
    ("one channel multiclass", lambda: focal_loss(x_b, t_mc), ValueError, r"C >= 2.*mode='binary'"),
    ("binary target out of {0,1}", lambda: focal_loss(x_b, t_b * 2, mode="binary"), ValueError, r"target.*\{0, 1\}.*\[0, 2\]"),
    ("binary size mismatch", lambda: focal_loss(x_b, t_b[:1], mode="binary"), ValueError, r"binary `target` shape \[1, 1, 4, 4\].*input \[2, 1, 4, 4\]"),
    ("NaN logits", lambda: focal_loss(torch.full((2, 3), float("nan")), torch.tensor([0, 1])), ValueError, r"input.*NaN"),
    ("+Inf logits", lambda: focal_loss(torch.tensor([[float("inf"), 0.0]]), torch.tensor([1])), ValueError, r"input"),
    ("probabilities above 1", lambda: focal_loss(x_b.abs() + 1, t_b, mode="binary", from_logits=False), ValueError, r"input.*\[0, 1\]"),
    ("probabilities not summing to 1", lambda: focal_loss(torch.full((2, 3), 0.5), torch.tensor([0, 1]), from_logits=False), ValueError, r"input.*sum to 1"),
    ("negative gamma", lambda: FocalLoss(gamma=-1.0), ValueError, r"gamma.*\[0, inf\).*-1"),
    ("alpha above 1", lambda: FocalLoss(alpha=1.5), ValueError, r"alpha.*\[0, 1\].*1.5"),
    ("weight wrong length", lambda: focal_loss(x_mc, t_mc, weight=torch.ones(4)), ValueError, r"weight.*length 3.*got length 4"),
    ("weight 2-D", lambda: focal_loss(x_mc, t_mc, weight=torch.ones(3, 1)), ValueError, r"weight.*1-D.*\[3, 1\]"),
    ("unknown reduction", lambda: FocalLoss(reduction="avg"), ValueError, r"reduction.*'mean'.*'avg'"),
    ("unknown mode", lambda: SoftF1Loss(mode="multi"), ValueError, r"mode.*'binary'.*'multi'"),
    ("unknown normalize", lambda: FocalLoss(normalize="batch"), ValueError, r"normalize.*'elements'"),
    ("label smoothing > 1", lambda: FocalLoss(label_smoothing=1.5), ValueError, r"label_smoothing.*\[0, 1\]"),
    ("empty batch", lambda: focal_loss(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)), ValueError, r"input.*empty"),
    ("numpy input to a module", lambda: focal_loss(np.zeros((2, 3), dtype=np.float32), t_mc[:, 0, 0]), TypeError, r"input.*torch.Tensor"),
    ("gamma is a string", lambda: FocalLoss(gamma="2"), TypeError, r"gamma.*real number"),
    ("multilabel shape", lambda: soft_f1_loss(x_mc, t_mc, mode="multilabel"), ValueError, r"multilabel `target`.*\[2, 3, 4, 4\]"),
    ("6-D input", lambda: focal_loss(torch.zeros(1, 2, 1, 1, 1, 1), torch.zeros(1, 1, 1, 1, 1, dtype=torch.long)), ValueError, r"input.*0-3 spatial"),
]


@pytest.mark.parametrize("desc,call,exc,pattern", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_clear_error(desc, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_ignore_index_value_is_not_a_range_error():
    t = t_mc.clone()
    t[0, 0, 0] = -100
    assert torch.isfinite(focal_loss(x_mc, t))
    t[0, 0, 0] = 255
    with pytest.raises(ValueError, match="ignore_index=-100"):
        focal_loss(x_mc, t)
