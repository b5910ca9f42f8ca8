"""Calibration metrics against torchmetrics, scikit-learn and hand-worked examples."""

import io

import numpy as np
import pytest
import torch
from sklearn.metrics import brier_score_loss, log_loss

from medloss.calibration import (
    CalibrationAccumulator,
    adaptive_calibration_error,
    bootstrap_ci,
    brier_score,
    classwise_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    plot_reliability_diagram,
    reliability_curve,
    save_figure,
)


def _random_multiclass(n=2000, k=5, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(n, k, generator=g) * scale, 1)
    y = torch.randint(0, k, (n,), generator=g)
    return p, y


def test_worked_edge_case_in_our_bin_convention():
    # bins (0,.25], (.25,.5], (.5,.75], (.75,1]: .5 -> bin 2 (gap .5); .6 and .75 -> bin 3
    # (acc 1, conf .675, gap .325); 1.0 -> bin 4 (gap 1). ECE = (.5 + 2 * .325 + 1) / 4
    p = torch.tensor([0.5, 0.6, 0.75, 1.0], dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0])
    assert expected_calibration_error(p, y, n_bins=4) == pytest.approx((0.5 + 2 * 0.325 + 1.0) / 4, abs=1e-12)
    assert expected_calibration_error(p, y, n_bins=4) == pytest.approx(0.5375, abs=1e-12)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("n_bins", [5, 15])
def test_equals_torchmetrics_on_random_data(norm, n_bins):
    tmf = pytest.importorskip("torchmetrics.functional.classification", reason="torchmetrics not installed")
    p, y = _random_multiclass(5000, 6)
    ref = tmf.multiclass_calibration_error(p, y, num_classes=6, n_bins=n_bins, norm=norm).item()
    assert expected_calibration_error(p, y, n_bins=n_bins, norm=norm) == pytest.approx(ref, abs=1e-6)
    pb = torch.rand(5000, generator=torch.Generator().manual_seed(3))
    yb = (torch.rand(5000, generator=torch.Generator().manual_seed(4)) < pb).long()
    ref_b = tmf.binary_calibration_error(pb, yb, n_bins=n_bins, norm=norm).item()
    assert expected_calibration_error(pb, yb, n_bins=n_bins, norm=norm) == pytest.approx(ref_b, abs=1e-6)


def test_every_sample_lands_in_one_bin_including_zero_and_one():
    p = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.3, 0.7], dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 1, 0, 1])
    curve = reliability_curve(p, y, n_bins=10)
    assert curve.counts.sum() == 6
    assert curve.counts[0] == 2 and curve.counts[-1] == 2
    # bin 1 holds p = 0 twice with one positive: gap .5; last bin p = 1 all positive: gap 0
    # p = .3 sits on the edge .3 -> bin (.2, .3], p = .7 -> (.6, .7]
    assert curve.counts[2] == 1 and curve.counts[6] == 1
    expected = (2 * 0.5 + 0 + 0.3 + 0.3) / 6
    assert expected_calibration_error(p, y, n_bins=10) == pytest.approx(expected, abs=1e-12)
    # float32(0.3) = 0.300000012 is above the edge 0.3: bin (.3, .4], as in torchmetrics and netcal
    assert reliability_curve(p.float(), y, n_bins=10).counts[3] == 1


def test_perfect_calibration_gives_zero():
    # in every bin the fraction of positives equals the (constant) predicted probability
    p = torch.tensor([0.25] * 4 + [0.5] * 2 + [0.75] * 4, dtype=torch.float64)
    y = torch.tensor([1, 0, 0, 0, 1, 0, 1, 1, 1, 0])
    assert expected_calibration_error(p, y, n_bins=10) == pytest.approx(0.0, abs=1e-15)
    assert maximum_calibration_error(p, y, n_bins=10) == pytest.approx(0.0, abs=1e-15)


def test_quantile_binning_equals_equal_mass_groups():
    g = np.random.default_rng(0)
    p = g.random(1000)
    y = (g.random(1000) < p ** 1.3).astype(int)
    order = np.argsort(p)
    gaps = [(len(i) / 1000) * abs(y[i].mean() - p[i].mean()) for i in np.array_split(order, 10)]
    assert adaptive_calibration_error(p, y, n_bins=10) == pytest.approx(sum(gaps), abs=1e-12)
    curve = reliability_curve(p, y, n_bins=10, binning="quantile")
    assert (curve.counts == 100).all()


def test_classwise_equals_per_class_loop():
    p, y = _random_multiclass(3000, 4, seed=5)
    pn, yn = p.double().numpy(), y.numpy()
    values = []
    for k in range(4):
        conf, hit = pn[:, k], (yn == k).astype(float)
        idx = np.clip(np.ceil(conf * 10) - 1, 0, 9).astype(int)
        e = 0.0
        for b in range(10):
            m = idx == b
            if m.any():
                e += m.mean() * abs(hit[m].mean() - conf[m].mean())
        values.append(e)
    assert classwise_calibration_error(p, y, n_bins=10) == pytest.approx(np.mean(values), abs=1e-6)


def test_brier_and_nll_equal_scikit_learn():
    p, y = _random_multiclass(500, 4, seed=1)
    pn, yn = p.double().numpy(), y.numpy()
    pn = pn / pn.sum(1, keepdims=True)
    assert brier_score(pn, yn) == pytest.approx(brier_score_loss(yn, pn, labels=[0, 1, 2, 3]), abs=1e-12)
    assert negative_log_likelihood(pn, yn) == pytest.approx(log_loss(yn, pn, labels=[0, 1, 2, 3]), abs=1e-10)
    pb = np.array([0.0, 0.2, 0.9, 1.0, 0.5, 1.0])
    yb = np.array([0, 0, 1, 1, 1, 0])
    assert brier_score(pb, yb) == pytest.approx(brier_score_loss(yb, pb), abs=1e-12)
    assert brier_score(pb, yb, scale_by_half=False) == pytest.approx(2 * brier_score_loss(yb, pb), abs=1e-12)
    # exact zeros and ones: clipped at machine epsilon, as scikit-learn
    assert negative_log_likelihood(pb, yb) == pytest.approx(log_loss(yb, pb), rel=1e-9)
    assert np.isfinite(negative_log_likelihood(pb, yb))


def test_reliability_curve_values():
    p = torch.tensor([0.1, 0.15, 0.8, 0.9, 0.95], dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 1, 0])
    c = reliability_curve(p, y, n_bins=5)
    np.testing.assert_allclose(c.edges, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert c.counts.tolist() == [2, 0, 0, 1, 2]
    assert c.mean_confidence[0] == pytest.approx(0.125) and c.accuracy[0] == pytest.approx(0.5)
    assert np.isnan(c.accuracy[1])
    assert c.ece == pytest.approx((2 * 0.375 + 1 * 0.2 + 2 * 0.425) / 5)
    assert c.to_dict()["accuracy"][1] is None


def test_ties_follow_argmax_first_index():
    p = torch.full((4, 4), 0.25)
    y = torch.tensor([0, 1, 2, 3])
    # argmax picks class 0 on every row: only the first row is correct, confidence .25 everywhere
    assert expected_calibration_error(p, y, n_bins=4) == pytest.approx(abs(0.25 - 0.25), abs=1e-7)
    assert expected_calibration_error(p, torch.tensor([1, 1, 1, 1]), n_bins=4) == pytest.approx(0.25, abs=1e-7)
    p2 = torch.tensor([[0.4, 0.4, 0.2], [0.2, 0.4, 0.4], [0.1, 0.3, 0.6]])
    y2 = torch.tensor([1, 1, 2])
    # row 0: argmax 0 != 1 (wrong); row 1: argmax 1 (right); row 2 right
    acc_expected = np.array([0.0, 1.0, 1.0])
    conf = np.array([0.4, 0.4, 0.6])
    ece = (2 / 3) * abs(acc_expected[:2].mean() - 0.4) + (1 / 3) * abs(1.0 - 0.6)
    assert expected_calibration_error(p2, y2, n_bins=5) == pytest.approx(ece, abs=1e-7)
    assert conf.shape == (3,)


def test_streaming_accumulator_matches_one_shot_and_merges():
    p, y = _random_multiclass(10_000, 5, seed=2)
    full = expected_calibration_error(p, y)
    a, b = CalibrationAccumulator(15), CalibrationAccumulator(15)
    for i, (pc, yc) in enumerate(zip(p.split(1000), y.split(1000), strict=True)):
        (a if i % 2 else b).update(pc, yc)
    merged = CalibrationAccumulator.from_dict(a.to_dict()).merge(b)
    assert merged.n_samples == 10_000
    assert merged.compute() == pytest.approx(full, abs=1e-12)
    assert merged.compute("max") == pytest.approx(maximum_calibration_error(p, y), abs=1e-12)
    with pytest.raises(ValueError, match="n_bins"):
        a.merge(CalibrationAccumulator(10))
    with pytest.raises(ValueError, match="empty"):
        CalibrationAccumulator(5).compute()


def test_numpy_and_torch_inputs_agree():
    p, y = _random_multiclass(300, 3)
    assert expected_calibration_error(p.numpy(), y.numpy()) == expected_calibration_error(p, y)
    assert expected_calibration_error(p[:, 1:2].numpy() / p[:, 1:2].max().item(), y.clamp(max=1).numpy()) >= 0


BAD = [
    ("prob above 1", lambda: expected_calibration_error(torch.tensor([0.2, 1.2]), torch.tensor([0, 1])), ValueError, r"probs.*\[0, 1\]"),
    ("negative prob", lambda: expected_calibration_error(torch.tensor([[1.2, -0.2], [0.5, 0.5]]), torch.tensor([0, 1])), ValueError, r"probs.*\[0, 1\]"),
    ("rows not summing", lambda: expected_calibration_error(torch.tensor([[0.2, 0.2], [0.5, 0.5]]), torch.tensor([0, 1])), ValueError, r"sum to 1"),
    ("NaN", lambda: brier_score(torch.tensor([0.2, float("nan")]), torch.tensor([0, 1])), ValueError, r"NaN"),
    ("label out of range", lambda: expected_calibration_error(torch.tensor([[0.5, 0.5]]), torch.tensor([2])), ValueError, r"labels.*\[0, 1\]"),
    ("length mismatch", lambda: expected_calibration_error(torch.tensor([0.5, 0.5]), torch.tensor([1])), ValueError, r"same length.*2 and 1"),
    ("empty", lambda: expected_calibration_error(torch.zeros(0), torch.zeros(0, dtype=torch.long)), ValueError, r"empty"),
    ("n_bins < 1", lambda: expected_calibration_error(torch.tensor([0.5]), torch.tensor([1]), n_bins=0), ValueError, r"n_bins.*>= 1"),
    ("bad norm", lambda: expected_calibration_error(torch.tensor([0.5]), torch.tensor([1]), norm="l3"), ValueError, r"norm"),
    ("bad binning", lambda: expected_calibration_error(torch.tensor([0.5]), torch.tensor([1]), binning="kmeans"), ValueError, r"binning"),
    ("float labels", lambda: expected_calibration_error(torch.tensor([0.5]), torch.tensor([0.5])), TypeError, r"labels.*integer"),
    ("3-D probs", lambda: expected_calibration_error(torch.zeros(2, 2, 2), torch.tensor([0, 1])), ValueError, r"probs"),
]


@pytest.mark.parametrize("desc,call,exc,pattern", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs(desc, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_bootstrap_reproducible_and_binned_agrees_with_rows():
    p, y = _random_multiclass(4000, 4, seed=7, scale=3.0)
    a = bootstrap_ci("ece", p, y, n_boot=500, seed=1)
    b = bootstrap_ci(expected_calibration_error, p, y, n_boot=500, seed=1)
    assert a == b and a.method == "binned"
    assert a.low <= a.estimate <= a.high
    rows = bootstrap_ci("ece", p, y, n_boot=1000, seed=2, method="rows")
    binned = bootstrap_ci("ece", p, y, n_boot=1000, seed=3, method="binned")
    width = rows.high - rows.low
    assert abs(rows.low - binned.low) < 0.2 * width and abs(rows.high - binned.high) < 0.2 * width
    mce_rows = bootstrap_ci("mce", p, y, n_boot=300, seed=2, method="rows", n_bins=10)
    mce_binned = bootstrap_ci("mce", p, y, n_boot=300, seed=2, method="binned", n_bins=10)
    assert mce_rows.estimate == mce_binned.estimate
    assert abs(mce_rows.high - mce_binned.high) < 0.5 * (mce_rows.high - mce_rows.low)
    brier = bootstrap_ci("brier", p, y, n_boot=200, seed=0)
    assert brier.method == "rows" and brier.low < brier.estimate < brier.high
    with pytest.raises(ValueError, match="binned"):
        bootstrap_ci("brier", p, y, method="binned")
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci("ece", p, y, level=1.5)


def test_reliability_diagram_figure(tmp_path):
    p, y = _random_multiclass(2000, 3, seed=4, scale=4.0)
    p_soft = torch.softmax(torch.log(p) / 2.0, 1)
    fig = plot_reliability_diagram({"uncalibrated": (p, y), "T = 2": (p_soft, y)}, n_bins=10, title="demo")
    axes = fig.get_axes()
    assert len(axes) == 2
    legend = [t.get_text() for t in axes[1].get_legend().get_texts()]  # below the histogram, off the data
    ece = expected_calibration_error(p, y, n_bins=10)
    mce = maximum_calibration_error(p, y, n_bins=10)
    assert any(f"ECE {ece:.3f}, MCE {mce:.3f} in (" in t for t in legend) and any(t.startswith("T = 2") for t in legend)
    out = tmp_path / "rel.png"
    save_figure(fig, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask  # as open() would make it, not mkstemp's 0600
    buf = io.BytesIO()
    plot_reliability_diagram((p[:, 0].double() / p[:, 0].max(), (y == 0).long())).savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"


def test_reliability_diagram_marks_thin_bins_and_names_the_mce_bin():
    # 30 samples over 10 bins: some bins hold one or two samples
    p = torch.tensor([0.05 + 0.03 * i for i in range(30)], dtype=torch.float64)
    y = (torch.arange(30) % 3 == 0).long()
    curve = reliability_curve(p, y, n_bins=10)
    fig = plot_reliability_diagram({"model": curve})
    legend = [t.get_text() for t in fig.get_axes()[1].get_legend().get_texts()]
    assert any(t.startswith("open markers: bins with < 10 samples") for t in legend)
    gaps = np.abs(curve.accuracy - curve.mean_confidence)
    b = int(np.nanargmax(gaps))  # the bin of the MCE, computed from the curve itself
    assert any(f"in ({curve.edges[b]:.2f}, {curve.edges[b + 1]:.2f}], n = {int(curve.counts[b])}" in t for t in legend)
    assert gaps[b] == pytest.approx(maximum_calibration_error(p, y, n_bins=10))


def test_cluster_bootstrap_keeps_patients_together():
    # 40 patients x 25 images; a patient-level effect makes images of one patient correlated
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(40), 25)
    shift = rng.normal(0, 0.25, 40)[patients]
    p = np.clip(0.5 + shift + rng.normal(0, 0.05, len(patients)), 0, 1)
    y = (rng.random(len(patients)) < 0.5).astype(int)
    # percentile intervals: the widths compare the two resampling schemes, nothing else
    rows = bootstrap_ci("brier", p, y, n_boot=300, seed=0, method="rows", interval="percentile")
    clusters = bootstrap_ci("brier", p, y, n_boot=300, seed=0, groups=patients, interval="percentile")
    assert clusters.method == "clusters" and clusters.estimate == rows.estimate
    # resampling patients, not images, gives the honest (wider) interval
    assert (clusters.high - clusters.low) > 1.5 * (rows.high - rows.low)
    # one cluster per sample is the ordinary row bootstrap
    same = bootstrap_ci("brier", p, y, n_boot=300, seed=0, groups=np.arange(len(p)))
    assert abs((same.high - same.low) - (rows.high - rows.low)) < 0.3 * (rows.high - rows.low)
    with pytest.raises(ValueError, match="groups"):
        bootstrap_ci("ece", p, y, groups=patients[:10])


# ----------------------------------------------------------------------------- ignore_index, sample_weight
def _data(n=400, k=4, seed=3):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(2 * torch.randn(n, k, generator=g, dtype=torch.float64), 1)
    labels = torch.randint(0, k, (n,), generator=g)
    return probs, labels


def test_brier_sample_weight_matches_scikit_learn():
    from sklearn.metrics import brier_score_loss

    g = torch.Generator().manual_seed(4)
    p = torch.rand(300, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (300,), generator=g)
    w = torch.rand(300, generator=g, dtype=torch.float64) * 3
    expected = brier_score_loss(y.numpy(), p.numpy(), sample_weight=w.numpy())
    assert brier_score(p, y, sample_weight=w) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
def test_integer_sample_weights_equal_repeated_rows(binning):
    from medloss.calibration import brier_score, expected_calibration_error

    probs, labels = _data()
    reps = torch.randint(0, 4, (probs.shape[0],), generator=torch.Generator().manual_seed(5))
    rep_p, rep_y = probs.repeat_interleave(reps, 0), labels.repeat_interleave(reps)
    if binning == "uniform":  # quantile edges of repeated rows differ from weighted quantiles: uniform bins only
        assert expected_calibration_error(probs, labels, sample_weight=reps.double()) == pytest.approx(
            expected_calibration_error(rep_p, rep_y), rel=1e-12)
    assert brier_score(probs, labels, sample_weight=reps) == pytest.approx(brier_score(rep_p, rep_y), rel=1e-12)


def test_ignore_index_drops_those_samples():
    from medloss.calibration import (
        brier_score,
        classwise_calibration_error,
        expected_calibration_error,
        negative_log_likelihood,
        reliability_curve,
    )

    probs, labels = _data()
    marked = labels.clone()
    marked[::3] = -1
    keep = marked != -1
    for fn in (expected_calibration_error, classwise_calibration_error, brier_score, negative_log_likelihood):
        assert fn(probs, marked, ignore_index=-1) == pytest.approx(fn(probs[keep], labels[keep]), rel=1e-12)
    curve = reliability_curve(probs, marked, ignore_index=-1)
    assert curve.counts.sum() == int(keep.sum())
    with pytest.raises(ValueError, match="every label equals ignore_index"):
        expected_calibration_error(probs, torch.full_like(labels, -1), ignore_index=-1)


def test_ignore_index_matches_torchmetrics_semantics():
    tm = pytest.importorskip("torchmetrics.classification")
    probs, labels = _data(seed=6)
    marked = labels.clone()
    marked[:50] = -1
    metric = tm.MulticlassCalibrationError(num_classes=4, n_bins=15, ignore_index=-1)
    # torchmetrics accumulates in float32 (see the module's other tests): 1e-6
    assert expected_calibration_error(probs.float(), marked, ignore_index=-1) == pytest.approx(
        float(metric(probs.float(), marked)), abs=1e-6)


@pytest.mark.parametrize("bad,pattern", [
    (torch.ones(3), r"one weight per sample"),
    (-torch.ones(400), r"finite weights >= 0"),
    (torch.zeros(400), r"sums to 0"),
])
def test_bad_sample_weight(bad, pattern):
    probs, labels = _data()
    with pytest.raises(ValueError, match=pattern):
        brier_score(probs, labels, sample_weight=bad)
