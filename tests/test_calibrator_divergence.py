"""No calibrator reports success where no fit exists: on validation data that the calibrator's features separate,
the NLL has no minimum (it falls towards 0 as the parameters grow). Every calibrator then warns, sets
``converged_ = False`` and ``diverged_ = True``; on ordinary data it does neither."""

import warnings

import pytest
import torch

from medloss.calibration import (
    BetaCalibrator,
    ClasswiseTemperatureScaler,
    DirichletCalibrator,
    IsotonicCalibrator,
    MatrixScaler,
    OrdinalTemperatureScaler,
    PlattScaler,
    TemperatureScaler,
    VectorScaler,
)


def _separable():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(300, 3, generator=g, dtype=torch.float64)
    zb = torch.randn(300, generator=g, dtype=torch.float64)
    return (z, z.argmax(1)), (zb, (zb > 0).long())  # the example: a class's logit decides the label


def _ordinary():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3000, 3, generator=g, dtype=torch.float64)
    y = torch.multinomial(z.softmax(1), 1, generator=g).squeeze(1)
    zb = torch.randn(3000, generator=g, dtype=torch.float64)
    yb = torch.bernoulli(torch.sigmoid(zb), generator=g).long()
    return (2 * z, y), (2 * zb, yb)  # over-confident by 2: every calibrator has a finite optimum


CASES = [
    (TemperatureScaler, {}, "multi"),
    (ClasswiseTemperatureScaler, {}, "multi"),
    (VectorScaler, {}, "multi"),
    (MatrixScaler, {}, "multi"),
    (DirichletCalibrator, {}, "multi"),
    (DirichletCalibrator, {"reg_lambda": 1e-2, "reg_mu": 1e-2}, "multi"),  # ODIR leaves the diagonal free
    (PlattScaler, {"smooth_targets": False}, "binary"),
    (BetaCalibrator, {}, "binary"),
    (IsotonicCalibrator, {}, "binary"),
]


@pytest.mark.parametrize("cls,kwargs,kind", CASES, ids=[f"{c.__name__}{'-odir' if k else ''}" for c, k, _ in CASES])
def test_separable_validation_data_is_reported(cls, kwargs, kind):
    multi, binary = _separable()
    z, y = multi if kind == "multi" else binary
    with pytest.warns(RuntimeWarning, match="converged_ is False"):
        cal = cls(**kwargs).fit(z, y)
    assert cal.converged_ is False and cal.diverged_ is True
    if cls is VectorScaler:  # what it returned before: weights of hundreds at a validation NLL of ~1e-7
        assert float(cal.weights_.abs().max()) > 50 and cal.nll_after_ < 1e-5


@pytest.mark.parametrize("cls,kwargs,kind", CASES, ids=[f"{c.__name__}{'-odir' if k else ''}" for c, k, _ in CASES])
def test_ordinary_data_converges_silently(cls, kwargs, kind):
    multi, binary = _ordinary()
    z, y = multi if kind == "multi" else binary
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cal = cls(**kwargs).fit(z, y)
    assert cal.converged_ is True and cal.diverged_ is False


def test_platt_with_its_smoothed_targets_has_a_finite_fit_on_separable_data():
    # Platt's targets (N+ + 1) / (N+ + 2) and 1 / (N- + 2) keep the optimum finite: no divergence to report
    _, (zb, yb) = _separable()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        platt = PlattScaler().fit(zb, yb)
    assert platt.converged_ and not platt.diverged_


def test_ordinal_temperature_on_separable_grades():
    scores = torch.linspace(-30, 30, 90, dtype=torch.float64)
    grades = torch.bucketize(scores, torch.tensor([-10.0, 10.0], dtype=torch.float64))  # the score decides
    with pytest.warns(RuntimeWarning, match="converged_ is False"):
        cal = OrdinalTemperatureScaler(torch.tensor([-10.0, 10.0], dtype=torch.float64)).fit(scores, grades)
    assert not cal.converged_ and cal.diverged_
