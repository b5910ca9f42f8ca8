"""A saved calibrator file is validated when loaded: a tampered or corrupt parameter is a one-line
ValueError naming it, never a calibrator that reverses or flattens the predictions."""

import json

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
    load_calibrator,
)


def _data(binary):
    g = torch.Generator().manual_seed(0)
    z = 2 * torch.randn(300, 3, generator=g, dtype=torch.float64)
    y = torch.multinomial(z.softmax(1), 1, generator=g).squeeze(1)
    if binary:
        return z[:, 1] - z[:, 0], (y == 1).long()
    return z, y


FITTED = [
    ("temperature", lambda: TemperatureScaler().fit(*_data(False))),
    ("platt", lambda: PlattScaler().fit(*_data(True))),
    ("isotonic", lambda: IsotonicCalibrator().fit(*_data(False))),
    ("classwise", lambda: ClasswiseTemperatureScaler().fit(*_data(False))),
    ("vector", lambda: VectorScaler().fit(*_data(False))),
    ("matrix", lambda: MatrixScaler().fit(*_data(False))),
    ("dirichlet", lambda: DirichletCalibrator().fit(*_data(False))),
    ("beta", lambda: BetaCalibrator().fit(*_data(True))),
    ("ordinal", lambda: OrdinalTemperatureScaler([-1.0, 0.0, 1.0]).fit(torch.randn(200, dtype=torch.float64),
                                                                       torch.arange(200) % 4)),
]


def _tamper(d, name):
    """One invalid edit per calibrator: (edited dict, the field the error must name)."""
    d = json.loads(json.dumps(d))
    if name in ("temperature", "ordinal"):
        d["temperature"] = -1.0
        return d, "temperature"
    if name == "platt":
        d["a"] = float("nan")
        return d, "'a'"
    if name == "isotonic":
        d["thresholds"][0]["y"] = list(reversed(d["thresholds"][0]["y"]))
        return d, "thresholds[0]"
    key = next(iter(d["params"]))
    d["params"][key] = d["params"][key][:-1]  # wrong shape
    return d, f"params.{key}"


@pytest.mark.parametrize("name,fit", FITTED, ids=[f[0] for f in FITTED])
def test_a_tampered_calibrator_file_is_rejected(tmp_path, name, fit):
    cal = fit()
    path = tmp_path / "c.json"
    cal.save(path)
    saved = json.loads(path.read_text())
    load_calibrator(path)  # the untouched file loads
    bad, field = _tamper(saved, name)
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        load_calibrator(path)
    # a missing field is a ValueError naming it, not a KeyError
    missing = dict(saved)
    key = next(k for k in ("temperature", "a", "thresholds", "params") if k in saved)
    del missing[key]
    path.write_text(json.dumps(missing))
    with pytest.raises(ValueError, match=repr(key)):
        load_calibrator(path)


@pytest.mark.parametrize("value", [-1.0, 0.0, float("inf"), "2", True, None])
def test_temperature_must_be_a_finite_positive_number(value):
    with pytest.raises(ValueError, match="'temperature'.*finite number > 0"):
        TemperatureScaler.from_dict({"temperature": value, "binary": False, "n_classes": 3})


def test_a_file_that_is_not_json_names_itself(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{temperature: 2")
    with pytest.raises(ValueError, match="not a medloss calibrator file"):
        load_calibrator(path)
