"""The bootstraps that make `medloss calibrate` fast on large files, against the exact computations."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from medloss.calibration import bootstrap as B
from medloss.calibration import bootstrap_clinical, lowess_smooth
from medloss.calibration._binned import _lowess_on_bins, _lowess_weights
from medloss.calibration.metrics import (
    adaptive_calibration_error,
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
)


def test_lowess_on_bins_of_one_row_is_r_lowess():
    """One row per bin, fitted at every row: R's lowess(iter = 0) with delta = 0 (lowess_smooth, checked
    against R elsewhere), to rounding."""
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(0.02, 0.98, 300))
    y = rng.binomial(1, x).astype(np.float64)
    ones = np.ones_like(x)
    fitted = _lowess_on_bins(x, _lowess_weights(x, ones, x), ones[None], y[None], x)[0]
    _, expected = lowess_smooth(x, y, delta=0.0)
    np.testing.assert_allclose(fitted, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("fn,kwargs", [
    (negative_log_likelihood, {}), (brier_score, {}), (adaptive_calibration_error, {"n_bins": 15}),
    (expected_calibration_error, {"binning": "quantile", "n_bins": 10, "norm": "l2"}),
])
@pytest.mark.parametrize("k", [1, 4])
def test_fast_row_bootstrap_is_the_row_bootstrap(fn, kwargs, k):
    """Same draws, same values: the per-row terms' mean and the sort-free equal-mass ECE equal the metric
    recomputed on each resample of the rows."""
    g = torch.Generator().manual_seed(k)
    z = 2 * torch.randn(1500, k, generator=g, dtype=torch.float64).squeeze(1)
    p = torch.sigmoid(z) if k == 1 else z.softmax(1)
    y = torch.bernoulli(p, generator=g).long() if k == 1 else torch.multinomial(p, 1, generator=g).squeeze(1)
    fast = B._fast_row_bootstrap(fn, p, y, 100, np.random.default_rng(3), False, kwargs)
    rows = B._row_bootstrap(fn, p, y, 100, np.random.default_rng(3), False, kwargs)
    np.testing.assert_allclose(fast, rows, rtol=1e-12, atol=1e-14)


def _quantile_noise(ci, n_boot, level=0.95):
    """The Monte-Carlo standard error of a bootstrap percentile bound from ``n_boot`` resamples (normal
    approximation: sqrt(a (1 - a) / B) / density at the bound, the spread taken from the interval)."""
    a = (1 - level) / 2
    sd = (ci.high - ci.low) / (2 * norm.ppf(1 - a))
    return math.sqrt(a * (1 - a) / n_boot) * sd / norm.pdf(norm.ppf(a))


@pytest.mark.parametrize("classes", [1, 3])
def test_binned_clinical_intervals_are_within_the_bootstrap_noise_of_the_exact_ones(classes):
    """Every bound of every number of the hierarchy: |binned - exact| within 4 Monte-Carlo standard errors
    of the difference of two independent bootstrap bounds (sqrt(2) x the bound's own error)."""
    rng = np.random.default_rng(11)
    n, n_boot = 2500, 300
    z = rng.normal(0, 1.5, (n, classes))
    if classes == 1:
        p, y = 1 / (1 + np.exp(-1.3 * z[:, 0] + 0.2)), rng.binomial(1, 1 / (1 + np.exp(-z[:, 0])))
    else:
        p = np.exp(1.3 * z) / np.exp(1.3 * z).sum(1, keepdims=True)
        q = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        y = (q.cumsum(1) > rng.random((n, 1))).argmax(1)
    exact = bootstrap_clinical(p, y, n_boot=n_boot, method="exact", seed=0)
    binned = bootstrap_clinical(p, y, n_boot=n_boot, method="binned", seed=1)
    parts = [(exact, binned)] if classes == 1 else [(exact[j], binned[j]) for j in exact]
    for e, b in parts:
        for key in e:
            if key in ("spiegelhalter_p", "u_p"):
                continue  # p-values: their bounds sit at ~0, where the normal approximation of the noise fails
            assert b[key].estimate == e[key].estimate  # the point estimates are exact either way
            tol = 4 * math.sqrt(2) * _quantile_noise(e[key], n_boot)
            assert abs(b[key].low - e[key].low) <= tol, (key, e[key], b[key], tol)
            assert abs(b[key].high - e[key].high) <= tol, (key, e[key], b[key], tol)


def test_method_choice():
    p = np.linspace(0.05, 0.95, 3000)
    y = (np.arange(3000) % 3 == 0).astype(int)
    with pytest.raises(ValueError, match="`method` must be one of"):
        bootstrap_clinical(p, y, n_boot=5, method="fast")
    with pytest.raises(ValueError, match="resamples rows"):
        bootstrap_clinical(p, y, n_boot=5, method="binned", groups=np.arange(3000) // 2)
