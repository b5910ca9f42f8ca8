"""BCa bootstrap intervals: the bounds equal scipy.stats.bootstrap(method="BCa"), every jackknife equals the
metric recomputed without the left-out rows, and an interval that does not hold its estimate says why."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from medloss.calibration import (
    _intervals,
    bootstrap_ci,
    bootstrap_clinical,
    brier_score,
    clinical_calibration,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
)
from medloss.calibration._binned import binned_jackknife
from medloss.calibration.bootstrap import _jackknife


@pytest.mark.parametrize("statistic", [np.mean, np.median, lambda v: np.std(v) / np.mean(v)])
def test_bca_bounds_equal_scipy(statistic):
    # scipy's own bootstrap distribution and a leave-one-out jackknife, through our bounds
    x = np.random.default_rng(0).exponential(size=60)
    res = stats.bootstrap((x,), statistic, method="BCa", n_resamples=2000, random_state=1, vectorized=False)
    jack = np.array([statistic(np.delete(x, i)) for i in range(len(x))])
    low, high, used, _ = _intervals.bounds(res.bootstrap_distribution, float(statistic(x)), jack, 0.95)
    assert used == "bca"
    np.testing.assert_allclose([low, high], [res.confidence_interval.low, res.confidence_interval.high], rtol=1e-12)


def test_acceleration_is_efron_tibshiranis_formula():
    # a = sum(d^3) / (6 (sum d^2)^1.5), d = mean - theta_(i): three values 0, 1, 5 -> d = 2, 1, -3
    assert _intervals.acceleration(np.array([0.0, 1.0, 5.0])) == pytest.approx((8 + 1 - 27) / (6 * 14**1.5))


def _data(n, k=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    if k is None:
        p = torch.rand(n, generator=g, dtype=torch.float64)
        return p, torch.bernoulli(p, generator=g).long()
    p = torch.softmax(2 * torch.randn(n, k, generator=g, dtype=torch.float64), 1)
    return p, torch.randint(0, k, (n,), generator=g)


@pytest.mark.parametrize("fn,kw,used", [
    (negative_log_likelihood, {}, "rows"), (brier_score, {}, "rows"),
    (expected_calibration_error, {"n_bins": 10}, "binned"), (maximum_calibration_error, {"n_bins": 10}, "binned"),
    (expected_calibration_error, {"n_bins": 10, "binning": "quantile"}, "rows"),
])
@pytest.mark.parametrize("n,k", [(80, None), (80, 4), (750, 3)])
def test_jackknife_equals_the_metric_without_each_group(fn, kw, used, n, k):
    p, y = _data(n, k)
    jack = _jackknife(fn, p, y, used, np.random.default_rng(5), None, kw)
    groups = _intervals.jackknife_groups(n, np.random.default_rng(5))  # the same groups
    assert len(groups) == min(n, _intervals.JACKKNIFE_GROUPS)
    expected = []
    for out in groups:
        keep = torch.from_numpy(np.setdiff1d(np.arange(n), out))
        expected.append(float(fn(p[keep], y[keep], **kw)))
    np.testing.assert_allclose(jack, expected, rtol=1e-9, atol=1e-12)


def test_binned_clinical_jackknife_is_exact_when_each_bin_holds_one_risk():
    # 12 distinct risks: every risk bin holds rows of one value, so the fits on the bins are the fits on the rows
    rng = np.random.default_rng(3)
    p = rng.choice(np.linspace(0.08, 0.9, 12), size=900)
    y = rng.binomial(1, p).astype(np.float64)
    groups = _intervals.jackknife_groups(len(p), np.random.default_rng(0))
    gid = np.empty(len(p), dtype=np.int64)
    for g, rows in enumerate(groups):
        gid[rows] = g
    keys = ["slope", "intercept", "calibration_in_the_large", "brier", "spiegelhalter_z"]
    jack = binned_jackknife(p, y, gid, len(groups), keys)
    for g in (0, 41, 99):
        keep = gid != g
        exact = clinical_calibration(p[keep], y[keep].astype(int))
        for k in keys:
            assert jack[k][g] == pytest.approx(exact[k], rel=1e-6, abs=1e-9), k


def test_all_resamples_above_the_estimate_give_the_percentile_interval_and_a_note():
    low, high, used, note = _intervals.bounds(np.linspace(0.2, 0.3, 100), 0.1, np.arange(5.0), 0.95, metric="ece")
    assert used == "percentile" and (low, high) == pytest.approx((0.2025, 0.2975))
    assert "no bias-corrected interval" in note and "the interval lies above the estimate" in note
    assert "100% of resamples lie above it, so the estimator is biased upward" in note and "binning noise" in note


def test_an_overcorrected_interval_says_so():
    # 99 % of the resamples above the estimate: z0 = -2.33 moves both BCa bounds below the 1 % quantile
    v = np.r_[0.0, np.linspace(0.2, 0.3, 99)]
    low, high, used, note = _intervals.bounds(v, 0.1, None, 0.95, metric="smoothed")
    assert used == "bca" and high < 0.1
    assert note.startswith("the interval lies below the estimate: 99% of resamples lie above it, so the estimator "
                           "is biased upward") and "carries the interval past the estimate" in note
    assert "most extreme resamples" in note  # its upper bound sits at the 0.35 % quantile of 100 resamples


def test_an_estimate_on_a_bound_is_noted():
    v = np.r_[np.linspace(0.5, 0.8, 30), np.full(70, 0.88)]  # 70 % of resamples equal the estimate, as MCE's do
    low, high, used, note = _intervals.bounds(v, 0.88, None, 0.95, interval="percentile", metric="max")
    assert high == 0.88 and "upper bound: 70% of resamples equal it" in note


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(15, 120), metric=st.sampled_from(["ece", "mce", "ace", "nll"]))
def test_an_interval_without_its_estimate_strictly_inside_carries_a_note(seed, n, metric):
    p, y = _data(n, 3, seed)
    ci = bootstrap_ci(metric, p, y, n_boot=200, seed=seed, n_bins=5) if metric != "nll" else bootstrap_ci(
        metric, p, y, n_boot=200, seed=seed)
    assert ci.low < ci.estimate < ci.high or ci.note  # no interval without its estimate inside and no reason


def test_clinical_intervals_are_bca_and_noted_where_needed():
    rng = np.random.default_rng(2)
    p = rng.uniform(0.05, 0.95, 150)
    out = bootstrap_clinical(p, rng.binomial(1, p), n_boot=200, seed=0)
    assert {ci.interval for ci in out.values()} == {"bca"}
    for ci in out.values():
        assert ci.low < ci.estimate < ci.high or ci.note
    d = out["slope"].to_dict()
    assert d["interval"] == "bca" and "note" in d


def test_percentile_interval_is_the_quantiles_of_the_resamples():
    p, y = _data(200)
    ci = bootstrap_ci("brier", p, y, n_boot=300, seed=4, interval="percentile")
    rng = np.random.default_rng(4)
    terms = ((p - y) ** 2).numpy()
    boot = [terms[rng.integers(0, 200, size=200)].mean() for _ in range(300)]
    assert (ci.low, ci.high) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])), rel=1e-12)
    assert ci.interval == "percentile"


def test_unknown_interval_is_rejected():
    p, y = _data(30)
    with pytest.raises(ValueError, match="interval"):
        bootstrap_ci("ece", p, y, interval="bc")
