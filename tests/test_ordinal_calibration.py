"""Ordinal calibration (SPEC 11): the per-threshold calibration error against the binary
ECE of each cumulative probability written out, and temperature scaling of a cumulative link model
against SciPy's bounded scalar minimiser on the same NLL."""

import math

import numpy as np
import pytest
import torch
from scipy import optimize, stats

from medloss.calibration import (
    OrdinalTemperatureScaler,
    expected_calibration_error,
    load_calibrator,
    ordinal_calibration_error,
)
from medloss.losses import CumulativeLinkLoss


def test_per_threshold_errors_are_binary_eces_of_the_cumulative_probabilities():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(500, 4, generator=g, dtype=torch.float64), 1)
    grades = torch.randint(0, 4, (500,), generator=g)
    result = ordinal_calibration_error(probs, grades, n_bins=10)
    for k, value in zip(result["thresholds"], result["per_threshold"], strict=True):
        survival = probs[:, k:].sum(1)
        assert value == pytest.approx(expected_calibration_error(survival, (grades >= k).long(), n_bins=10), abs=1e-12)
    assert result["mean"] == pytest.approx(np.mean(result["per_threshold"]))


def _ordinal_population(n, cut, link, seed, over_confidence):
    """Grades from the cumulative link model P(y <= k) = F(c_k - f); a model reporting scaled f and c."""
    g = torch.Generator().manual_seed(seed)
    f = 1.5 * torch.randn(n, generator=g, dtype=torch.float64)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    quantile = {"logit": torch.logit, "probit": lambda v: torch.special.ndtri(v),
                "cloglog": lambda v: torch.log(-torch.log1p(-v))}[link](u)
    grades = (quantile + f > cut.unsqueeze(1)).sum(0)  # y = #{k: c_k < f + noise}
    return over_confidence * f, over_confidence * cut, grades


def _nll_scipy(t, f, cut, y, link):
    cdf = {"logit": lambda x: 1 / (1 + np.exp(-x)), "probit": stats.norm.cdf,
           "cloglog": lambda x: 1 - np.exp(-np.exp(x))}[link]
    c = np.r_[-np.inf, cut, np.inf]
    upper = cdf((c[y + 1] - f) / t)
    lower = cdf((c[y] - f) / t)
    return -np.mean(np.log(upper - lower))


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_temperature_is_the_nll_minimum(link):
    cut = torch.tensor([-1.5, 0.0, 1.0], dtype=torch.float64)
    f, c, y = _ordinal_population(5000, cut, link, seed=1, over_confidence=2.5)
    cal = OrdinalTemperatureScaler(c, link=link).fit(f, y)
    assert cal.converged_ and cal.n_passes_ < 20
    ref = optimize.minimize_scalar(_nll_scipy, bounds=(0.05, 20.0), method="bounded",
                                   args=(f.numpy(), c.numpy(), y.numpy(), link), options={"xatol": 1e-10})
    assert cal.temperature_ == pytest.approx(ref.x, rel=1e-6)
    assert cal.nll_after_ == pytest.approx(ref.fun, abs=1e-10)
    assert cal.temperature_ == pytest.approx(2.5, rel=0.1)  # the scaling it undoes


def test_from_loss_and_persistence(tmp_path):
    loss = CumulativeLinkLoss(num_classes=4, learn_cutpoints=True)
    cut = loss.cutpoints.detach().double()
    f, c, y = _ordinal_population(3000, cut, "logit", seed=2, over_confidence=1.0)
    cal = OrdinalTemperatureScaler.from_loss(loss).fit(3 * f, y)
    probs = cal.predict_proba(3 * f)
    # P(y <= k) = sigmoid((c_k - score) / T) with the loss's cutpoints, written out
    cdf = torch.sigmoid((cut.unsqueeze(0) - 3 * f.unsqueeze(1)) / cal.temperature_)
    cdf = torch.cat([torch.zeros(len(f), 1, dtype=cdf.dtype), cdf, torch.ones(len(f), 1, dtype=cdf.dtype)], 1)
    torch.testing.assert_close(probs, cdf[:, 1:] - cdf[:, :-1], atol=1e-12, rtol=0)
    cal.save(tmp_path / "ordinal.json")
    torch.testing.assert_close(load_calibrator(tmp_path / "ordinal.json").predict_proba(3 * f), probs)


def test_bad_input():
    with pytest.raises(ValueError, match="strictly increasing"):
        OrdinalTemperatureScaler([1.0, 0.0])
    cal = OrdinalTemperatureScaler([0.0, 1.0])
    with pytest.raises(ValueError, match=r"lie in \[0, 3\)"):
        cal.fit(torch.randn(5), torch.tensor([0, 1, 2, 3, 0]))
    with pytest.raises(RuntimeError, match="not fitted"):
        cal.predict_proba(torch.randn(3))
    with pytest.raises(ValueError, match="K >= 2"):
        ordinal_calibration_error(torch.rand(4), torch.tensor([0, 1, 0, 1]))
    assert math.isfinite(ordinal_calibration_error(torch.tensor([[0.5, 0.5]]), torch.tensor([1]))["mean"])
