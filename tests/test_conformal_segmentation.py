"""ConformalSegmentation: conformal risk control of the per-image false-negative rate (Angelopoulos et al.),
checked against a brute-force transcription of the rule and over 100 random calibration / test splits of
generated lesion images."""

import math

import numpy as np
import pytest
import torch

from medloss.calibration import ConformalSegmentation


def lesion_images(n=400, size=32, seed=0):
    """Images with 0-3 disk lesions of random radius, and the lesion probabilities of an imperfect model: logits
    +-2.5 inside / outside, blurred edges, per-image difficulty and pixel noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((n, size, size), dtype=bool)
    logits = np.empty((n, size, size))
    for i in range(n):
        dist = np.full((size, size), np.inf)
        for _ in range(rng.integers(0, 4)):
            cy, cx, r = rng.uniform(4, size - 4), rng.uniform(4, size - 4), rng.uniform(2, 6)
            d = np.hypot(yy - cy, xx - cx) - r
            masks[i] |= d <= 0
            dist = np.minimum(dist, d)
        edge = np.tanh(-np.clip(dist, -10, 10) / 1.5)  # +1 deep inside, -1 far outside
        logits[i] = 2.5 * edge * rng.uniform(0.4, 1.2) + rng.normal(0, 1.0, (size, size))
    return torch.from_numpy(1 / (1 + np.exp(-logits))), torch.from_numpy(masks)


def brute_force_threshold(p, m, alpha, grid):
    """The rule transcribed plainly: the largest t = j / grid with (sum_i FNR_i(t) + 1) / (n + 1) <= alpha."""
    p, m = p.reshape(len(p), -1).numpy(), m.reshape(len(m), -1).numpy()
    n = len(p)
    for j in range(grid, -1, -1):
        t = j / grid
        fnr = [np.mean(pi[mi] < t) if mi.any() else 0.0 for pi, mi in zip(p, m, strict=True)]
        if (np.sum(fnr) + 1) / (n + 1) <= alpha:
            return t, float(np.mean(fnr))
    raise AssertionError("t = 0 always qualifies")


def test_the_threshold_is_the_rule_and_the_curves_the_per_image_fnr():
    p, m = lesion_images(n=60, size=16, seed=1)
    crc = ConformalSegmentation(alpha=0.1, n_thresholds=200).fit(p, m)
    t, risk = brute_force_threshold(p, m, 0.1, 200)
    assert crc.threshold_ == t and crc.calibration_risk_ == pytest.approx(risk, abs=1e-12)
    curves = crc._fnr_curves(p.reshape(60, -1).double(), m.reshape(60, -1))
    for j in (0, 37, 100, 163, 200):
        expected = [float(np.mean(pi[mi] < j / 200)) if mi.any() else 0.0
                    for pi, mi in zip(p.reshape(60, -1).numpy(), m.reshape(60, -1).numpy(), strict=True)]
        np.testing.assert_allclose(curves[:, j].numpy(), expected, atol=1e-12)
    masks = crc.predict_masks(p)
    assert masks.shape == p.shape and torch.equal(masks, p >= t)


def test_the_false_negative_rate_is_controlled_over_random_splits():
    """E[FNR] <= alpha, and >= alpha - 2 / (n + 1) (continuous probabilities): the mean over 100 random splits of
    200 calibration / 200 test images lies in [alpha - 2 / (n + 1) - 0.01, alpha + 0.01]."""
    alpha, n_cal = 0.1, 200
    p, m = lesion_images()
    risks, thresholds = [], []
    for split in range(100):
        perm = torch.randperm(len(p), generator=torch.Generator().manual_seed(split))
        cal, test = perm[:n_cal], perm[n_cal:]
        crc = ConformalSegmentation(alpha).fit(p[cal], m[cal])
        risks.append(crc.evaluate(p[test], m[test])["mean_fnr"])
        thresholds.append(crc.threshold_)
    mean = float(np.mean(risks))
    assert alpha - 2 / (n_cal + 1) - 0.01 <= mean <= alpha + 0.01, mean
    assert 0.05 < np.mean(thresholds) < 0.95  # a real threshold, neither every pixel nor none


def test_errors_and_the_smallest_calibration_set():
    p, m = lesion_images(n=20, size=8)
    with pytest.raises(ValueError, match="needs at least 19 calibration images"):
        ConformalSegmentation(alpha=0.05).fit(p[:10], m[:10])
    with pytest.raises(ValueError, match="`risk` must be one of 'fnr'"):
        ConformalSegmentation(risk="fdr")
    with pytest.raises(ValueError, match="`masks` must have the shape"):
        ConformalSegmentation(alpha=0.2).fit(p, m[:, :4])
    with pytest.raises(ValueError, match="0 / 1"):
        ConformalSegmentation(alpha=0.2).fit(p, m.double() * 2)
    with pytest.raises(RuntimeError, match="not fitted"):
        ConformalSegmentation().predict_masks(p)
    # n = 1 / alpha - 1 = 4 images: (4 R + 1) / 5 <= 0.2 needs R = 0, i.e. no lesion pixel below t: the threshold
    # is the grid point at or below the smallest lesion probability
    crc = ConformalSegmentation(alpha=0.2).fit(p[:4], m[:4])
    lesion_p = p[:4][m[:4]]
    assert lesion_p.numel() > 0
    assert crc.threshold_ == math.floor(float(lesion_p.min()) * 2000) / 2000 and crc.calibration_risk_ == 0.0


def test_the_documented_example_runs_and_controls_the_rate(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "examples" / "conformal_segmentation.py"
    spec = importlib.util.spec_from_file_location("conformal_segmentation_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = example.main(["--out", str(tmp_path / "crc.png")])
    assert (tmp_path / "crc.png").stat().st_size > 0
    # one split: the mean FNR is near alpha (its guarantee is on average over splits), far below the 0.5 mask's
    assert out["at_threshold"]["mean_fnr"] <= 0.12 and out["at_half"]["mean_fnr"] > 0.25
    assert out["at_threshold"]["mask_share"] > out["at_half"]["mask_share"]
