"""Calibrators against independently solved optima (SciPy) and scikit-learn."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize, minimize_scalar
from sklearn.isotonic import IsotonicRegression

from medloss.calibration import (
    IsotonicCalibrator,
    PlattScaler,
    TemperatureScaler,
    expected_calibration_error,
    load_calibrator,
)


def overconfident(n, k=5, scale=4.0, seed=0):
    """Labels drawn from softmax(true), logits = scale * true: a classifier over-confident by `scale`."""
    g = torch.Generator().manual_seed(seed)
    true = torch.randn(n, k, generator=g, dtype=torch.float64) * 1.2
    y = torch.multinomial(torch.softmax(true, 1), 1, generator=g).squeeze(1)
    return true * scale, y


def test_temperature_matches_scipy_optimum_multiclass():
    z, y = overconfident(4000, seed=1)
    ts = TemperatureScaler().fit(z, y)
    ref = minimize_scalar(lambda t: F.cross_entropy(z / t, y).item(), bounds=(0.05, 50), method="bounded",
                          options={"xatol": 1e-10})
    assert ts.temperature_ == pytest.approx(ref.x, rel=1e-6)
    assert ts.temperature_ == pytest.approx(4.0, rel=0.1)  # the generating over-confidence
    assert ts.relative_gradient_ < 1e-6 and ts.converged_ and ts.n_passes_ <= 10
    assert ts.nll_after_ == pytest.approx(F.cross_entropy(z / ts.temperature_, y).item(), rel=1e-12)
    # the optimum: d NLL / d T = 0 (finite difference)
    h = 1e-5 * ts.temperature_
    d = (ts.nll(z, y, ts.temperature_ + h) - ts.nll(z, y, ts.temperature_ - h)) / (2 * h)
    assert abs(d) < 1e-7
    # accuracy unchanged, NLL improved
    assert torch.equal(ts.predict_proba(z).argmax(1), z.argmax(1))
    assert ts.nll_after_ < ts.nll_before_


def test_temperature_binary_single_logit():
    g = torch.Generator().manual_seed(0)
    true = torch.randn(3000, generator=g, dtype=torch.float64) * 2
    y = torch.bernoulli(torch.sigmoid(true), generator=g).long()
    z = true * 0.3  # under-confident: T < 1
    ts = TemperatureScaler().fit(z, y)
    ref = minimize_scalar(lambda t: F.binary_cross_entropy_with_logits(z / t, y.double()).item(),
                          bounds=(0.01, 10), method="bounded", options={"xatol": 1e-10})
    assert ts.temperature_ == pytest.approx(ref.x, rel=1e-6)
    assert ts.temperature_ < 1
    assert ts.predict_proba(z).shape == (3000,)


def test_article_001_workflow_fit_on_validation_evaluate_on_test():
    z, y = overconfident(30_000, k=4, scale=3.0, seed=2)
    z_val, y_val, z_test, y_test = z[:10_000], y[:10_000], z[10_000:], y[10_000:]
    ece_before = expected_calibration_error(torch.softmax(z_test, 1), y_test)
    ts = TemperatureScaler().fit(z_val, y_val)  # validation only, never the test split
    ece_after = expected_calibration_error(ts.predict_proba(z_test), y_test)
    assert ece_before > 0.15 and ece_after < 0.02
    # LBFGS(lr=0.01, max_iter=50) from T = 1.5 (the common recipe, Guo et al.'s code) stops short
    t = torch.nn.Parameter(torch.tensor(1.5, dtype=torch.float64))
    opt = torch.optim.LBFGS([t], lr=0.01, max_iter=50)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z_val / t, y_val)
        loss.backward()
        return loss

    opt.step(closure)
    assert abs(t.item() - ts.temperature_) > 0.5
    assert ts.nll(z_val, y_val) < ts.nll(z_val, y_val, temperature=t.item())


def test_temperature_separable_data_hits_bound_with_warning():
    z = torch.tensor([[5.0, -5.0], [-5.0, 5.0]] * 10, dtype=torch.float64)
    y = torch.tensor([0, 1] * 10)
    with pytest.warns(RuntimeWarning, match="separable"):
        ts = TemperatureScaler().fit(z, y)
    assert ts.temperature_ < 1.0 and ts.nll_after_ < 1e-12
    assert ts.diverged_ and not ts.converged_
    # an optimum beyond t_max (labels independent of the logits): the bound is used, with a warning
    z2 = torch.tensor([[1.0, -1.0], [-1.0, 1.0]] * 10, dtype=torch.float64)
    y2 = torch.tensor([0, 0, 1, 1] * 5)
    with pytest.warns(RuntimeWarning, match="outside"):
        ts2 = TemperatureScaler(t_max=100.0).fit(z2, y2)
    assert ts2.at_bound_ and ts2.temperature_ == pytest.approx(100.0)
    assert not ts2.converged_ and not ts2.diverged_  # no finite optimum, but not separable data


def test_platt_matches_scipy_and_logistic_regression():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(2000, generator=g, dtype=torch.float64) * 3
    y = torch.bernoulli(torch.sigmoid(0.5 * z - 0.4), generator=g).long()
    zn, yn = z.numpy(), y.numpy().astype(float)

    def objective(theta, t):
        s = theta[0] * zn + theta[1]
        return np.mean(np.logaddexp(0, s) - t * s)

    plain = PlattScaler(smooth_targets=False).fit(z, y)
    ref = minimize(objective, [1.0, 0.0], args=(yn,), method="BFGS", options={"gtol": 1e-12})
    np.testing.assert_allclose([plain.a_, plain.b_], ref.x, rtol=1e-6, atol=1e-8)
    assert plain.a_ == pytest.approx(0.5, abs=0.1) and plain.b_ == pytest.approx(-0.4, abs=0.15)
    n_pos, n_neg = yn.sum(), len(yn) - yn.sum()
    t = np.where(yn == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    smooth = PlattScaler().fit(z, y)
    ref_s = minimize(objective, [1.0, 0.0], args=(t,), method="BFGS", options={"gtol": 1e-12})
    np.testing.assert_allclose([smooth.a_, smooth.b_], ref_s.x, rtol=1e-6, atol=1e-8)
    # two-column logits use the margin
    two = torch.stack([torch.zeros_like(z), z], 1)
    torch.testing.assert_close(PlattScaler(smooth_targets=False).fit(two, y).predict_proba(two), plain.predict_proba(z))


def test_isotonic_equals_scikit_learn_and_renormalises():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(1500, generator=g, dtype=torch.float64) * 2
    y = torch.bernoulli(torch.sigmoid(z * 0.5), generator=g).long()
    iso = IsotonicCalibrator().fit(z, y)
    ref = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(torch.sigmoid(z).numpy(), y.numpy())
    z_new = torch.linspace(-8, 8, 101, dtype=torch.float64)
    np.testing.assert_allclose(iso.predict_proba(z_new).numpy(), ref.predict(torch.sigmoid(z_new).numpy()), atol=1e-12)
    zm, ym = overconfident(2000, k=3, seed=5)
    p = IsotonicCalibrator().fit(zm, ym).predict_proba(zm)
    torch.testing.assert_close(p.sum(1), torch.ones(2000, dtype=torch.float64))
    assert expected_calibration_error(p, ym) < expected_calibration_error(torch.softmax(zm, 1), ym)


@pytest.mark.parametrize("make", [
    lambda z, y: TemperatureScaler().fit(z, y),
    lambda z, y: IsotonicCalibrator().fit(z, y),
])
def test_save_load_round_trip(tmp_path, make):
    z, y = overconfident(500, k=3, seed=6)
    cal = make(z, y)
    path = tmp_path / "cal.json"
    cal.save(path)
    loaded = load_calibrator(path)
    assert type(loaded) is type(cal)
    torch.testing.assert_close(loaded.predict_proba(z), cal.predict_proba(z))
    assert json.loads(path.read_text())["type"] in ("temperature", "isotonic")
    assert [p.name for p in tmp_path.iterdir()] == ["cal.json"]


def test_platt_save_load(tmp_path):
    z = torch.randn(200, dtype=torch.float64)
    y = (z > 0).long()
    y[:20] = 1 - y[:20]
    cal = PlattScaler().fit(z, y)
    cal.save(tmp_path / "p.json")
    torch.testing.assert_close(load_calibrator(tmp_path / "p.json").transform(z), cal.transform(z))


def test_bad_inputs():
    z, y = overconfident(50, k=3)
    with pytest.raises(ValueError, match="look like probabilities"):
        TemperatureScaler().fit(torch.softmax(z, 1), y)
    with pytest.raises(ValueError, match="logits.*non-finite"):
        TemperatureScaler().fit(torch.full((3, 2), float("nan")), torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="labels.*N = 50"):
        TemperatureScaler().fit(z, y[:10])
    with pytest.raises(ValueError, match=r"labels.*\[0, 2\]"):
        TemperatureScaler().fit(z, torch.full((50,), 3))
    with pytest.raises(RuntimeError, match="not fitted"):
        TemperatureScaler().transform(z)
    with pytest.raises(ValueError, match="binary"):
        PlattScaler().fit(z, y)
    with pytest.raises(ValueError, match="empty"):
        IsotonicCalibrator().fit(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
