"""Vector / matrix / class-wise temperature / Dirichlet / beta calibration (SPEC 11)
against scikit-learn's unpenalised logistic regression on the same features (the same convex
problem, solved independently), nesting of the families, persistence and bad input."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from medloss.calibration import (
    BetaCalibrator,
    ClasswiseTemperatureScaler,
    DirichletCalibrator,
    MatrixScaler,
    TemperatureScaler,
    VectorScaler,
    load_calibrator,
)


def classwise_miscalibrated(n=6000, k=4, seed=0):
    """Logits whose classes are miscalibrated differently (scales and offsets per class)."""
    g = torch.Generator().manual_seed(seed)
    truth = 1.5 * torch.randn(n, k, generator=g, dtype=torch.float64)
    y = torch.multinomial(truth.softmax(1), 1, generator=g).squeeze(1)
    scale = torch.linspace(0.5, 3.0, k, dtype=torch.float64)
    offset = torch.linspace(-1.0, 1.0, k, dtype=torch.float64)
    return truth * scale + offset, y


def sklearn_probabilities(features: np.ndarray, y: np.ndarray) -> np.ndarray:
    lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10000)
    return lr.fit(features, y).predict_proba(features)


def test_matrix_scaling_is_multinomial_logistic_regression_on_the_logits():
    z, y = classwise_miscalibrated(n=3000, k=3)
    cal = MatrixScaler().fit(z, y)
    assert cal.converged_ and cal.grad_norm_ <= 1e-7
    expected = sklearn_probabilities(z.numpy(), y.numpy())
    np.testing.assert_allclose(cal.predict_proba(z).numpy(), expected, atol=2e-5)


def test_dirichlet_is_multinomial_logistic_regression_on_log_probabilities():
    z, y = classwise_miscalibrated(n=3000, k=3, seed=1)
    cal = DirichletCalibrator().fit(z, y)
    expected = sklearn_probabilities(torch.log_softmax(z, 1).numpy(), y.numpy())
    np.testing.assert_allclose(cal.predict_proba(z).numpy(), expected, atol=2e-5)


def test_beta_calibration_is_logistic_regression_on_log_p_and_log_1_minus_p():
    g = torch.Generator().manual_seed(2)
    z = 2 * torch.randn(5000, generator=g, dtype=torch.float64)
    lp, l1p = torch.nn.functional.logsigmoid(z), torch.nn.functional.logsigmoid(-z)
    y = torch.bernoulli(torch.sigmoid(1.5 * lp - 0.7 * l1p + 0.3), generator=g).long()
    cal = BetaCalibrator().fit(z, y)
    lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10000).fit(torch.stack([lp, -l1p], 1).numpy(), y.numpy())
    np.testing.assert_allclose([cal.a_, cal.b_, cal.c_], [*lr.coef_[0], lr.intercept_[0]], atol=1e-5)


def test_beta_drops_a_negative_coefficient_and_refits():
    # the truth has a < 0: the paper refits with the ln p term removed (a = 0)
    g = torch.Generator().manual_seed(3)
    z = 2 * torch.randn(20000, generator=g, dtype=torch.float64)
    lp, l1p = torch.nn.functional.logsigmoid(z), torch.nn.functional.logsigmoid(-z)
    y = torch.bernoulli(torch.sigmoid(-0.8 * lp - 1.0 * l1p - 0.5), generator=g).long()
    cal = BetaCalibrator().fit(z, y)
    assert cal.a_ == 0.0
    lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10000).fit((-l1p).unsqueeze(1).numpy(), y.numpy())
    np.testing.assert_allclose([cal.b_, cal.c_], [lr.coef_[0, 0], lr.intercept_[0]], atol=1e-5)


def test_vector_and_classwise_temperature_against_scipy():
    from scipy.optimize import minimize

    z, y = classwise_miscalibrated(n=4000, k=3, seed=4)
    zn, yn = z.numpy(), y.numpy()

    def nll(theta, bias):
        s = zn * theta[:3] + (theta[3:] if bias else 0.0)
        s = s - s.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(s).sum(1)) - s[np.arange(len(yn)), yn]))

    vec = minimize(nll, np.r_[np.ones(3), np.zeros(3)], args=(True,), method="BFGS", options={"gtol": 1e-10})
    ours = VectorScaler().fit(z, y)
    assert ours.nll_after_ == pytest.approx(vec.fun, abs=1e-10)
    np.testing.assert_allclose(ours.weights_.numpy(), vec.x[:3], atol=1e-4)
    cw = minimize(nll, np.ones(3), args=(False,), method="BFGS", options={"gtol": 1e-10})
    ours = ClasswiseTemperatureScaler().fit(z, y)
    np.testing.assert_allclose(ours.temperatures_.numpy(), 1 / cw.x, atol=1e-4)


def test_nested_families_fit_at_least_as_well():
    z, y = classwise_miscalibrated()
    nll = {name: cal.fit(z, y).nll_after_ for name, cal in {
        "temperature": TemperatureScaler(), "classwise": ClasswiseTemperatureScaler(), "vector": VectorScaler(),
        "matrix": MatrixScaler(), "dirichlet": DirichletCalibrator()}.items()}
    eps = 1e-10
    assert nll["classwise"] <= nll["temperature"] + eps
    assert nll["vector"] <= nll["classwise"] + eps
    assert nll["matrix"] <= nll["vector"] + eps
    assert nll["dirichlet"] <= nll["temperature"] + eps
    # and on this class-wise miscalibrated set the richer families do strictly better than one temperature
    assert nll["vector"] < nll["temperature"] - 0.01


@pytest.mark.parametrize("cls,kwargs", [(VectorScaler, {}), (MatrixScaler, {}), (ClasswiseTemperatureScaler, {}),
                                        (DirichletCalibrator, {"reg_lambda": 0.1, "reg_mu": 0.1}),
                                        (BetaCalibrator, {})])
def test_save_load_roundtrip_and_determinism(cls, kwargs, tmp_path):
    z, y = classwise_miscalibrated(n=1500, k=3, seed=5)
    if cls is BetaCalibrator:
        z, y = z[:, 1] - z[:, 0], (y == 1).long()
    cal = cls(**kwargs).fit(z, y)
    again = cls(**kwargs).fit(z, y)
    for key in cal.params_:
        assert torch.equal(cal.params_[key], again.params_[key])  # deterministic
    path = tmp_path / "cal.json"
    cal.save(path)
    loaded = load_calibrator(path)
    assert type(loaded) is cls
    torch.testing.assert_close(loaded.predict_proba(z), cal.predict_proba(z), rtol=0, atol=1e-15)


def test_dirichlet_odir_penalty_shrinks_off_diagonal_weights():
    z, y = classwise_miscalibrated(n=2000, k=4, seed=6)
    off = []
    for lam in (0.0, 1.0, 100.0):
        w = DirichletCalibrator(reg_lambda=lam).fit(z, y).weights_
        off.append(float((w - torch.diag(w.diagonal())).pow(2).sum()))
    assert off[0] > off[1] > off[2]


BAD = [
    ("unfitted", lambda: VectorScaler().transform(torch.randn(3, 3)), RuntimeError, "not fitted"),
    ("binary into multiclass-only", lambda: MatrixScaler().fit(torch.randn(10), torch.randint(0, 2, (10,))), ValueError,
     "multiclass"),
    ("multiclass into beta", lambda: BetaCalibrator().fit(torch.randn(10, 3), torch.randint(0, 3, (10,))), ValueError,
     "binary"),
    ("negative lambda", lambda: DirichletCalibrator(reg_lambda=-1.0), ValueError, "reg_lambda"),
    ("one class", lambda: VectorScaler().fit(torch.randn(10, 3), torch.zeros(10, dtype=torch.long)), ValueError,
     "single class"),
]


@pytest.mark.parametrize("desc,call,exc,pattern", BAD, ids=[b[0] for b in BAD])
def test_bad_input(desc, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_width_mismatch_after_fit():
    z, y = classwise_miscalibrated(n=500, k=3, seed=7)
    cal = VectorScaler().fit(z, y)
    with pytest.raises(ValueError, match=r"do not match the fitted VectorScaler"):
        cal.transform(torch.randn(5, 4))


def test_odir_fit_converges_and_keeps_the_map():
    # the off-diagonal penalty sees a direction the NLL does not (a shift common to W's rows); minimising it
    # there in closed form keeps L-BFGS well conditioned: the fit reaches its gradient tolerance
    z, y = classwise_miscalibrated(n=3000, k=5, seed=8)
    cal = DirichletCalibrator(reg_lambda=0.1).fit(z, y)
    assert cal.converged_ and cal.grad_norm_ <= cal.tol
    # the reported W is the penalty's representative: every column's off-diagonal entries sum to 0
    w = cal.weights_
    torch.testing.assert_close(w.sum(0) - w.diagonal(), torch.zeros(5, dtype=w.dtype), atol=1e-12, rtol=0)


@pytest.mark.parametrize("cls,kwargs", [(DirichletCalibrator, {"reg_lambda": 1.0, "reg_mu": 1.0}), (VectorScaler, {}),
                                        (BetaCalibrator, {})])
def test_newton_polish_finishes_a_stopped_fit(cls, kwargs):
    # L-BFGS cut short after 3 iterations: Newton steps take the fit to the same optimum, to tolerance
    z, y = classwise_miscalibrated(n=2000, k=3, seed=9)
    if cls is BetaCalibrator:
        z, y = z[:, 1] - z[:, 0], (y == 1).long()
    short = cls(max_iter=3, **kwargs).fit(z, y)
    full = cls(**kwargs).fit(z, y)
    assert short.converged_ and short.grad_norm_ <= short.tol
    # both stop within a gradient of 1e-7 of the same optimum: objective values agree to ~1e-8
    assert short.nll_after_ == pytest.approx(full.nll_after_, abs=1e-8)
    torch.testing.assert_close(short.predict_proba(z), full.predict_proba(z), atol=1e-5, rtol=0)
