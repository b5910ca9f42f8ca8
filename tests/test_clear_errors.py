"""Errors a new user met that were unclear: each is now one line naming the argument."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from medloss.calibration import OrdinalTemperatureScaler, expected_calibration_error
from medloss.losses import CombinedLoss, CumulativeLinkLoss, DiceLoss, FocalLoss, get_loss
from medloss.workflow.data import prepare_target
from medloss.workflow.io import UserError


def test_ordinal_temperature_scaler_from_a_loss_without_cutpoints():
    with pytest.raises(TypeError, match="`loss` must be a CumulativeLinkLoss.*got DiceLoss"):
        OrdinalTemperatureScaler.from_loss(DiceLoss())
    scaler = OrdinalTemperatureScaler.from_loss(CumulativeLinkLoss(num_classes=4))
    assert scaler.n_classes_ == 4


def test_combined_spec_errors_name_what_is_missing_or_incompatible():
    with pytest.raises(ValueError, match="different network outputs.*'cumulative_link': one score per sample"):
        CombinedLoss.from_spec("cumulative_link+dice")
    with pytest.raises(TypeError, match=r"'cumulative_link' needs the argument\(s\) 'num_classes'"):
        CombinedLoss.from_spec("cumulative_link")
    with pytest.raises(TypeError, match=r"get_loss\('cumulative_link', num_classes=...\)"):
        get_loss("cumulative_link")
    assert CombinedLoss.from_spec("cumulative_link", num_classes=3).terms["cumulative_link"].num_classes == 3


def test_messages_show_numbers_not_numpy_reprs():
    with pytest.raises(UserError) as err:
        prepare_target(pd.DataFrame({"x": [1, 2, 3], "g": [0, 1, 2.5]}), "g", "ordinal")
    assert "found 2.5" in str(err.value) and "np." not in str(err.value)
    with pytest.raises(TypeError) as err:
        FocalLoss(gamma=np.str_("2"))
    assert "np." not in str(err.value)


def test_read_only_arrays_from_pandas_give_no_warning():
    df = pd.DataFrame({"p": np.linspace(0.05, 0.95, 10), "y": [0, 1] * 5})
    p, y = df["p"].to_numpy(), df["y"].to_numpy()
    p.flags.writeable = False
    y.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = expected_calibration_error(p, y, n_bins=2)
    # two bins: [0, 0.5) holds p 0.05..0.45 (mean 0.25, labels 0,1,0,1,0 -> 0.4), [0.5, 1] p 0.55..0.95 (0.75 vs 0.6)
    assert value == pytest.approx(0.5 * abs(0.25 - 0.4) + 0.5 * abs(0.75 - 0.6))


def test_meta_tensors_work_in_the_losses_that_failed():
    from medloss.losses import AsymmetricUnifiedFocalLoss

    x, t = torch.randn(2, 3, 4, 4, device="meta"), torch.randint(0, 3, (2, 4, 4), device="meta")
    assert AsymmetricUnifiedFocalLoss()(x, t).device.type == "meta"
    score, grades = torch.randn(5, 1, device="meta"), torch.randint(0, 4, (5,), device="meta")
    assert CumulativeLinkLoss(num_classes=4)(score, grades).device.type == "meta"
