"""Clinical calibration hierarchy against R's rms::val.prob.

Expected values: R 4.2.2, rms 6.5.0 (Debian's r-cran-rms), from `Rscript tests/data/clinical_calibration.R`
on the inputs in tests/data/clinical_calibration_inputs.csv (written by tests/data/make_clinical_inputs.py;
17 significant digits, so both sides read identical doubles). The R script, for reference:

    v <- val.prob(p, y, pl = FALSE)  # Intercept, Slope, Eavg, E90, Emax, S:z, S:p, Brier, C (ROC), Dxy, R2, D,
                                     # D:Chi-sq, U, U:Chi-sq, U:p, Q
    fit <- is.finite(qlogis(p))
    citl <- coef(glm(y[fit] ~ offset(qlogis(p[fit])), family = binomial,
                     control = glm.control(epsilon = 1e-14, maxit = 100)))[1]
    approx(lowess(p, y, iter = 0), xout = sort(unique(p)), ties = mean)$y   # the smoothed curve ("ties")
"""

from __future__ import annotations

import csv
import doctest
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from medloss.calibration import (
    adjust_prevalence,
    bootstrap,
    bootstrap_ci,
    calibration_in_the_large,
    calibration_intercept,
    calibration_slope,
    clinical,
    clinical_calibration,
    clinical_calibration_by_subgroup,
    derivation_prevalence,
    hosmer_lemeshow_test,
    integrated_calibration_index,
    plots,
    smoothed_calibration_curve,
    spiegelhalter_test,
)

DATA = Path(__file__).parent / "data" / "clinical_calibration_inputs.csv"

# fmt: off
R_VAL_PROB = {
    "calibrated": {"Intercept": -0.0290403234363612, "Slope": 0.901268334306741, "Eavg": 0.025462254922009, "E90": 0.0414825467810831, "Emax": 0.0491878027692228, "S:z": 0.977968435957869, "S:p": 0.328089935472128, "Brier": 0.180072603304727, "C (ROC)": 0.806751467710372, "CITL": -0.0285359171854025, "Dxy": 0.613502935420744, "R2": 0.361925466382109, "D": 0.313269236818848, "D:Chi-sq": 94.9807710456544, "U": -0.00407516463963285, "U:Chi-sq": 0.777450608110144, "U:p": 0.677920466442214, "Q": 0.317344401458481},
    "overconfident": {"Intercept": 0.478556026150553, "Slope": 0.545906548298324, "Eavg": 0.116841716725244, "E90": 0.210151651849146, "Emax": 0.214995139734883, "S:z": 8.10358251049445, "S:p": 5.33640062982427e-16, "Brier": 0.20180156004821, "C (ROC)": 0.797150225660864, "CITL": 0.719463410405845, "Dxy": 0.594300451321728, "R2": 0.156532389620994, "D": 0.120997234626133, "D:Chi-sq": 49.3988938504532, "U": 0.160486903395393, "U:Chi-sq": 66.1947613581574, "U:p": 4.21884749357559e-15, "Q": -0.0394896687692605},
    "underconfident": {"Intercept": -0.479223481904132, "Slope": 2.02491457573104, "Eavg": 0.117508316540338, "E90": 0.171345381003849, "Emax": 0.191150354993117, "S:z": -4.70339845148942, "S:p": 2.55866384298121e-06, "Brier": 0.182002314559843, "C (ROC)": 0.826627604166667, "CITL": -0.404078004425602, "Dxy": 0.653255208333333, "R2": 0.305850116055429, "D": 0.254000664959787, "D:Chi-sq": 102.600265983915, "U": 0.10053888992835, "U:Chi-sq": 42.2155559713401, "U:p": 6.80782652473511e-10, "Q": 0.153461775031437},
    "small": {"Intercept": -0.335881481326972, "Slope": 0.236435321907515, "Eavg": 0.199928544953415, "E90": 0.396061942912859, "Emax": 0.60569238461286, "S:z": 1.49640903109997, "S:p": 0.134547097555988, "Brier": 0.250914308077609, "C (ROC)": 0.62, "CITL": -0.176630836511245, "Dxy": 0.24, "R2": -0.16799145497382, "D": -0.157131959041463, "D:Chi-sq": -2.92829897603658, "U": 0.0512597845768798, "U:Chi-sq": 3.28149461442199, "U:p": 0.193835133758838, "Q": -0.208391743618343},
    "ties": {"Intercept": 0.157939607842161, "Slope": 0.795418844807632, "Eavg": 0.0595549441168939, "E90": 0.0987855947268165, "Emax": 0.107587475480718, "S:z": 1.94274261354473, "S:p": 0.0520472646939993, "Brier": 0.20017, "C (ROC)": 0.764927536231884, "CITL": 0.167732022695767, "Dxy": 0.529855072463768, "R2": 0.257982876133304, "D": 0.210521598089289, "D:Chi-sq": 53.6303995223222, "U": 0.00821016849207194, "U:Chi-sq": 4.05254212301799, "U:p": 0.131826177473621, "Q": 0.202311429597217},
    "rare": {"Intercept": 0.966178662479572, "Slope": 1.54436295106554, "Eavg": 0.0115764078372796, "E90": 0.0209056384984078, "Emax": 0.0707201622010911, "S:z": -3.03868651940895, "S:p": 0.0023761196404538, "Brier": 0.0124444398674135, "C (ROC)": 0.871841216216216, "CITL": -0.641294635963557, "Dxy": 0.743682432432432, "R2": 0.1490019260793, "D": 0.0192051735550847, "D:Chi-sq": 29.8077603326271, "U": 0.00855560256240832, "U:Chi-sq": 14.8334038436125, "U:p": 0.000601128448399657, "Q": 0.0106495709926764},
    "zero_one": {"Intercept": -0.303053953755306, "Slope": 1.27673780544826, "Eavg": 0.0375398737332992, "E90": 0.0744291520417216, "Emax": 0.0763678106674808, "S:z": 0.17633108009479, "S:p": 0.860033846180128, "Brier": 0.159757855626937, "C (ROC)": 0.864506172839506, "CITL": -0.242819586091108, "Dxy": 0.729012345679012, "R2": 0.506205864893615, "D": 0.468140618543051, "D:Chi-sq": 54.3680305139078, "U": math.inf, "U:Chi-sq": math.inf, "U:p": 0, "Q": -math.inf},
}
# R: approx(lowess(p, y, iter = 0), xout = sort(unique(p)), ties = mean)$y on the "ties" data set
R_TIES_SMOOTH = [0.133716407770387, 0.265317755320777, 0.328677966953945, 0.507587475480718, 0.598785594726816,
                 0.632878036407238, 0.725283921918157, 0.758802389074772, 0.831098676072873]
# fmt: on
OURS = {"Intercept": "intercept", "Slope": "slope", "Eavg": "e_avg", "E90": "e_90", "Emax": "e_max",
        "S:z": "spiegelhalter_z", "S:p": "spiegelhalter_p", "Brier": "brier", "C (ROC)": "c_statistic",
        "CITL": "calibration_in_the_large", "Dxy": "dxy", "R2": "r2", "D": "d", "D:Chi-sq": "d_chisq", "U": "u",
        "U:Chi-sq": "u_chisq", "U:p": "u_p", "Q": "q"}


def _datasets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out: dict[str, tuple[list[float], list[int]]] = {}
    with DATA.open() as fh:
        for row in csv.DictReader(fh):
            p, y = out.setdefault(row["dataset"], ([], []))
            p.append(float(row["p"]))
            y.append(int(row["y"]))
    return {k: (np.array(p), np.array(y)) for k, (p, y) in out.items()}


DATASETS = _datasets()


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


@pytest.mark.parametrize("name", list(R_VAL_PROB))
def test_equals_r_val_prob(name):
    p, y = DATASETS[name]
    ours = _quiet(clinical_calibration, p, y)
    assert set(ours) == set(clinical.CLINICAL_KEYS)
    for r_key, expected in R_VAL_PROB[name].items():
        got = ours[OURS[r_key]]
        # 1e-6 absolute; tiny p-values also relative (R prints 15 significant digits)
        assert got == pytest.approx(expected, abs=1e-6, rel=1e-6 if abs(expected) < 1e-3 else 0), (name, r_key)
    assert ours["n"] == len(p) and ours["events"] == int(y.sum())


def test_smoothed_curve_equals_r_lowess_with_ties_averaged():
    p, y = DATASETS["ties"]
    curve = smoothed_calibration_curve(p, y)
    uniq = np.unique(p)
    at_unique = np.array([curve[p == u][0] for u in uniq])
    np.testing.assert_allclose(at_unique, R_TIES_SMOOTH, atol=1e-9)
    for u in uniq:  # every tied probability reads the same value
        assert np.ptp(curve[p == u]) == 0.0


def test_individual_functions_equal_the_hierarchy_and_torch_input():
    p, y = DATASETS["overconfident"]
    r = R_VAL_PROB["overconfident"]
    pt, yt = torch.from_numpy(p), torch.from_numpy(y)
    assert calibration_slope(pt, yt) == pytest.approx(r["Slope"], abs=1e-6)
    assert calibration_intercept(p, y) == pytest.approx(r["Intercept"], abs=1e-6)
    assert calibration_in_the_large(p, y) == pytest.approx(r["CITL"], abs=1e-6)
    assert integrated_calibration_index(pt.float(), yt) == pytest.approx(r["Eavg"], abs=1e-6)  # float32 input
    z, pval = spiegelhalter_test(p, y)
    assert z == pytest.approx(r["S:z"], abs=1e-6) and pval == pytest.approx(r["S:p"], rel=1e-6)


def test_exact_zero_one_probabilities_warn_and_leave_the_fits():
    p, y = DATASETS["zero_one"]
    with pytest.warns(RuntimeWarning, match="6 observations deleted"):
        clinical_calibration(p, y)


def test_c_statistic_equals_exact_auc_when_no_two_probabilities_share_a_bin():
    # probabilities 0.001 apart never share one of val.prob's 0.0002-wide bins: the binned C is the exact AUC
    rng = np.random.default_rng(3)
    p = rng.permutation(np.arange(1, 999) / 1000.0 + 0.0001)[:400]
    y = rng.binomial(1, p)
    assert _quiet(clinical_calibration, p, y)["c_statistic"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(40, 300), a=st.floats(-1.0, 1.0), b=st.floats(0.3, 2.5))
def test_recalibrated_predictions_have_slope_one_intercept_zero(seed, n, a, b):
    # the maximum-likelihood recalibration q = sigmoid(a* + b* logit p) satisfies the score equations of the
    # refit with (a, b) = (0, 1), so q's own intercept / slope / CITL are 0, 1, 0 (a closed-form property)
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    p = 1.0 / (1.0 + np.exp(-z))
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-(a + b * z))))
    if y.min() == y.max():
        return
    a_hat, b_hat = calibration_intercept(p, y), calibration_slope(p, y)
    if not (math.isfinite(a_hat) and abs(b_hat) < 20):
        return
    q = 1.0 / (1.0 + np.exp(-(a_hat + b_hat * z)))
    assert calibration_slope(q, y) == pytest.approx(1.0, abs=1e-7)
    assert calibration_intercept(q, y) == pytest.approx(0.0, abs=1e-7)
    shifted = 1.0 / (1.0 + np.exp(-(calibration_in_the_large(p, y) + z)))
    assert calibration_in_the_large(shifted, y) == pytest.approx(0.0, abs=1e-7)
    # CITL: the shifted predictions' mean equals the event rate (the intercept-only score equation)
    assert shifted.mean() == pytest.approx(y.mean(), abs=1e-9)


def test_multiclass_one_vs_rest_and_ordinal_thresholds():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(300, 4))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 4, 300)
    per_class = _quiet(clinical_calibration, probs, labels)
    assert sorted(per_class) == [0, 1, 2, 3]
    for k in range(4):
        assert per_class[k] == _quiet(clinical_calibration, probs[:, k], (labels == k).astype(int))
    per_threshold = _quiet(clinical_calibration, torch.from_numpy(probs), torch.from_numpy(labels), ordinal=True)
    assert sorted(per_threshold) == [0, 1, 2]
    for k in range(3):
        tail = probs[:, k + 1:].sum(1)
        expected = _quiet(clinical_calibration, tail, (labels > k).astype(int))
        for key in clinical.CLINICAL_KEYS:
            assert per_threshold[k][key] == pytest.approx(expected[key], abs=1e-12)


def test_multiclass_absent_class_warns_and_gives_nan():
    probs = np.full((6, 3), 1 / 3)
    probs[:, 0] += np.linspace(-0.1, 0.1, 6)
    probs[:, 1] -= np.linspace(-0.1, 0.1, 6)
    with pytest.warns(RuntimeWarning, match="class 2: the labels hold one outcome"):
        out = clinical_calibration(probs, [0, 1, 0, 1, 0, 1])
    assert math.isnan(out[2]["slope"]) and out[2]["events"] == 0


def test_bootstrap_by_name_with_patient_groups():
    p, y = DATASETS["calibrated"]
    ci = bootstrap_ci("calibration_slope", p, y, n_boot=200, seed=1)
    assert ci.estimate == pytest.approx(R_VAL_PROB["calibrated"]["Slope"], abs=1e-6)
    assert ci.low < ci.estimate < ci.high and ci.method == "rows"
    groups = np.arange(len(p)) // 3  # three images per patient
    cluster = bootstrap_ci("integrated_calibration_index", p, y, n_boot=100, seed=1, groups=groups)
    assert cluster.method == "clusters" and cluster.estimate == pytest.approx(R_VAL_PROB["calibrated"]["Eavg"], abs=1e-6)
    assert cluster.low < cluster.estimate < cluster.high


def test_separated_outcome_gives_nan_with_a_warning():
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    y = np.array([0, 0, 0, 1, 1, 1])
    with pytest.warns(RuntimeWarning, match="separated"):
        assert math.isnan(calibration_slope(p, y))


BAD = [
    ("probability above 1", lambda: clinical_calibration([0.2, 1.2, 0.5], [0, 1, 1]), ValueError, r"`probs`.*\[0, 1\]"),
    ("NaN", lambda: clinical_calibration([0.2, float("nan"), 0.5], [0, 1, 1]), ValueError, r"`probs` contains NaN"),
    ("label 2", lambda: clinical_calibration([0.2, 0.4, 0.5], [0, 2, 1]), ValueError, r"`labels`"),
    ("one class", lambda: clinical_calibration([0.2, 0.4, 0.5], [1, 1, 1]), ValueError, r"`labels` hold one class only"),
    ("length", lambda: calibration_slope([0.2, 0.4, 0.5], [1, 0]), ValueError, r"same length"),
    ("constant", lambda: clinical_calibration([0.3, 0.3, 0.3], [1, 0, 0]), ValueError, r"single distinct value"),
    ("2-D to a binary function", lambda: calibration_slope(np.full((4, 2), 0.5), [0, 1, 0, 1]), ValueError, r"clinical_calibration"),
    ("ordinal binary", lambda: clinical_calibration([0.2, 0.4], [0, 1], ordinal=True), ValueError, r"ordinal=True"),
]


@pytest.mark.parametrize("what,call,exc,match", BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_the_argument(what, call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("module,least", [(clinical, 10), (bootstrap, 2), (plots, 1)],
                         ids=["clinical", "bootstrap", "plots"])
def test_docstring_examples(module, least):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= least and result.failed == 0


# R (base R; the computation of ResourceSelection::hoslem.test, which Debian does not package), g = 10:
#   hl <- function(x, y, g = 10) {
#     cutyhat <- cut(y, breaks = unique(quantile(y, probs = seq(0, 1, 1/g))), include.lowest = TRUE)
#     obs <- xtabs(cbind(1 - x, x) ~ cutyhat); expect <- xtabs(cbind(1 - y, y) ~ cutyhat)
#     chisq <- sum((obs - expect)^2/expect); df <- nlevels(cutyhat) - 2; c(chisq, df, 1 - pchisq(chisq, df)) }
#   hl(y, p) on each data set of the CSV -> (statistic, df, p-value)
R_HOSMER_LEMESHOW = {
    "calibrated": (5.58252833513432, 8, 0.693880397613665),
    "overconfident": (102.97250048966, 8, 0.0),
    "underconfident": (38.3182671951745, 8, 6.57442513429807e-06),
    "small": (18.7703015061067, 8, 0.0161375361876703),
    "ties": (11.9838352426004, 7, 0.101091710059),  # tied deciles merge two groups
    "rare": (15.9371308166736, 8, 0.0432888537744057),
    "zero_one": (4.79950671850569, 8, 0.778774460856411),
}


@pytest.mark.parametrize("name", list(R_HOSMER_LEMESHOW))
def test_hosmer_lemeshow_equals_r(name):
    p, y = DATASETS[name]
    stat, df, pval = R_HOSMER_LEMESHOW[name]
    r = hosmer_lemeshow_test(p, y)
    assert r["statistic"] == pytest.approx(stat, rel=1e-9) and r["df"] == df
    assert r["p_value"] == pytest.approx(pval, abs=1e-9, rel=1e-6)


def test_hosmer_lemeshow_with_a_group_expecting_no_event_is_nan_as_r():
    # R (the hl function above): hl(y, p, g = 5) -> NaN 2 NaN; with the first label 1 (an event where none is
    # expected) -> Inf 2 0
    p = [0, 0, 0, 0, 0.2, 0.4, 0.6, 0.8, 0.9, 1]
    y = [0, 0, 0, 0, 0, 1, 0, 1, 1, 1]
    with pytest.warns(RuntimeWarning, match=r"risk group\(s\) 1 \(p in \[0, 0.12\]\) expect 0 events"):
        r = hosmer_lemeshow_test(p, y, n_groups=5)
    assert math.isnan(r["statistic"]) and math.isnan(r["p_value"]) and r["df"] == 2
    with pytest.warns(RuntimeWarning, match="statistic is infinite"):
        r = hosmer_lemeshow_test(p, [1, *y[1:]], n_groups=5)
    assert r["statistic"] == math.inf and r["p_value"] == 0.0


def test_prevalence_adjustment_and_derivation_prevalence():
    # R: plogis(qlogis(c(0.5, 0.9)) + qlogis(0.02) - qlogis(0.5)) -> 0.02, 0.155172413793103
    np.testing.assert_allclose(adjust_prevalence(np.array([0.5, 0.9]), 0.5, 0.02), [0.02, 0.155172413793103], rtol=1e-12)
    t = adjust_prevalence(torch.tensor([0.5, 0.9], dtype=torch.float64), 0.5, 0.02)
    torch.testing.assert_close(t, torch.tensor([0.02, 0.155172413793103], dtype=torch.float64))
    # exact at the extremes: odds scale by 49 / 1 -> 1 / 49 without rounding to 0 or 1
    tiny = adjust_prevalence(np.array([1e-300, 1.0, 0.0]), 0.5, 0.02)
    assert tiny[0] == pytest.approx(1e-300 / 49, rel=1e-12) and tiny[1] == 1.0 and tiny[2] == 0.0
    # R: a <- coef(glm(y ~ offset(qlogis(p)), family = binomial))[1]; plogis(qlogis(3/8) - a) -> 0.55321190943298
    p, y = [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9], [0, 0, 0, 0, 1, 0, 1, 1]
    assert derivation_prevalence(p, y) == pytest.approx(0.55321190943298, abs=1e-9)
    # moving the probabilities from the derivation prevalence to the labels' rate calibrates them in the large
    moved = adjust_prevalence(np.array(p), derivation_prevalence(p, y), 3 / 8)
    assert calibration_in_the_large(moved, y) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="target_prevalence"):
        adjust_prevalence([0.5], 0.5, 1.0)
    with pytest.raises(ValueError, match="n_groups"):
        hosmer_lemeshow_test(p, y, n_groups=2)


def test_subgroup_calibration_shows_the_miscalibrated_site():
    # site A's predictions are calibrated, site B's over-confident (its truth is half as extreme): B's slope CI
    # lies below 1 and A's contains the R value of the calibrated data set
    pa, ya = DATASETS["calibrated"]
    pb, yb = DATASETS["overconfident"]
    p, y = np.concatenate([pa, pb]), np.concatenate([ya, yb])
    site = np.array(["A"] * len(pa) + ["B"] * len(pb))
    out = _quiet(clinical_calibration_by_subgroup, p, y, site, n_boot=200, seed=0)
    assert list(out) == ["A", "B", "all"] and out["A"]["n"] == len(pa) and out["B"]["events"] == int(yb.sum())
    assert out["A"]["intervals"]["slope"].estimate == pytest.approx(R_VAL_PROB["calibrated"]["Slope"], abs=1e-6)
    assert out["B"]["intervals"]["slope"].estimate == pytest.approx(R_VAL_PROB["overconfident"]["Slope"], abs=1e-6)
    assert out["B"]["intervals"]["slope"].high < 1.0 < out["A"]["intervals"]["slope"].high
    # a subgroup with one outcome reports why instead of failing the others
    site2 = site.copy()
    site2[:2] = "C"
    y2 = y.copy()
    y2[:2] = 0
    out2 = _quiet(clinical_calibration_by_subgroup, p, y2, site2, n_boot=20)
    assert out2["C"]["intervals"] is None and "one class only" in out2["C"]["error"]
    with pytest.raises(ValueError, match="`subgroups` must hold one value per sample"):
        clinical_calibration_by_subgroup(p, y, site[:10])


@pytest.mark.parametrize("n", [400, 5000], ids=["rows resampled", "binned (above 2,000 rows)"])
def test_clinical_plot_draws_the_bootstrap_band_at_every_size(n):
    """The band is drawn whichever way the rows are resampled (above 2,000 rows it was computed and not drawn):
    one filled band per curve, holding the smoothed curve it surrounds."""
    pytest.importorskip("matplotlib")
    from matplotlib.collections import PolyCollection

    from medloss.calibration import plot_clinical_calibration

    rng = np.random.default_rng(n)
    p = rng.uniform(0.05, 0.95, n)
    y = rng.binomial(1, p)
    fig = plot_clinical_calibration((p, y), n_boot=40, seed=1)
    ax = fig.axes[0]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection) and c.get_paths()]  # not the legend's proxy
    assert len(bands) == 1
    vertices = bands[0].get_paths()[0].vertices
    curve = ax.lines[1]  # after the ideal diagonal: the smoothed curve
    xs, ys = curve.get_xdata(), curve.get_ydata()
    lower = np.interp(xs, *_band_edge(vertices, upper=False))
    upper = np.interp(xs, *_band_edge(vertices, upper=True))
    inside = (ys >= lower - 1e-9) & (ys <= upper + 1e-9)
    assert inside.mean() > 0.9
    import matplotlib.pyplot as plt

    plt.close(fig)


def _band_edge(vertices, *, upper):
    """The lower or upper edge of a fill_between polygon as (x ascending, y): its vertices are a start point, the
    lower edge forward, the upper edge backward and a closing point."""
    n = (len(vertices) - 3) // 2
    edge = vertices[1:n + 1] if not upper else vertices[n + 2:2 * n + 2]
    order = np.argsort(edge[:, 0])
    return edge[order, 0], edge[order, 1]


def test_clinical_plot_draws_the_curve_within_0_and_1():
    # R: lowess(c(.1, .2, .3, .4, .5, .6), c(0, 0, 1, 0, 1, 1), iter = 0)$y starts at -0.1198 and ends at 1.1198;
    # the drawn curve and band stay in [0, 1], the ICI uses the unclipped curve (as val.prob)
    pytest.importorskip("matplotlib")
    from medloss.calibration import plot_clinical_calibration

    p, y = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), np.array([0, 0, 1, 0, 1, 1])
    assert smoothed_calibration_curve(p, y).min() < -0.1  # the curve itself leaves [0, 1]
    fig = plot_clinical_calibration((p, y), n_boot=20, seed=0)
    ys = fig.axes[0].lines[1].get_ydata()
    assert ys.min() >= 0.0 and ys.max() <= 1.0
    for band in fig.axes[0].collections:
        for path in band.get_paths():
            assert path.vertices[:, 1].min() >= 0.0 and path.vertices[:, 1].max() <= 1.0
