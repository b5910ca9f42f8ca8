"""Choosing the calibrator on evidence: the cross-validated NLL, ECE and Brier score of each family on the
validation rows, the best refitted on all of them.

A richer family always fits the validation rows at least as well (matrix scaling contains vector scaling,
which contains temperature scaling); only held-out rows say whether its extra parameters generalise. So
each candidate is fitted on ``cv - 1`` folds and scored on the held-out fold, folds stratified by label
and drawn with ``seed``; ODIR's ``reg_lambda`` / ``reg_mu`` are chosen on the same folds from a grid, as
dirichletcal's ``GridSearchCV`` does. The uncalibrated model is scored too ("none"), so the table shows
whether calibrating helps at all.

The choice follows the one-standard-error rule (Hastie, Tibshirani & Friedman, *Elements of Statistical
Learning*, 7.10): the simplest family whose held-out score is within one standard error of the best one's,
the error taken from the per-fold differences between the two (the folds are shared). Differences smaller
than that are noise of the validation split, and the simpler calibrator is the safer one on new data.
``rule="min"`` takes the best mean instead.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._validation import check_choice, check_int, fmt_shape
from .calibrators import IsotonicCalibrator, PlattScaler, TemperatureScaler, _Calibrator, _logits_labels
from .linear import BetaCalibrator, ClasswiseTemperatureScaler, DirichletCalibrator, MatrixScaler, VectorScaler
from .metrics import brier_score, expected_calibration_error, negative_log_likelihood

#: the families select_calibrator knows, by name (those that take [N, K] or one binary logit)
FAMILIES: dict[str, Callable[..., _Calibrator]] = {
    "temperature": TemperatureScaler, "classwise_temperature": ClasswiseTemperatureScaler, "vector": VectorScaler,
    "matrix": MatrixScaler, "dirichlet": DirichletCalibrator, "dirichlet_odir": DirichletCalibrator,
    "platt": PlattScaler, "beta": BetaCalibrator, "isotonic": IsotonicCalibrator,
}
MULTICLASS_DEFAULT = ("temperature", "classwise_temperature", "vector", "matrix", "dirichlet_odir", "isotonic")
BINARY_DEFAULT = ("temperature", "platt", "beta", "isotonic")
_BINARY_ONLY = ("platt", "beta")
_MULTICLASS_ONLY = ("classwise_temperature", "vector", "matrix", "dirichlet", "dirichlet_odir")
#: ODIR's grid (reg_lambda = reg_mu = each value), as dirichletcal's examples search it
ODIR_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
METRICS = ("nll", "ece", "brier")
#: simplest first: the order the one-standard-error rule prefers (parameters: 1, 2, K, 3, 2K, K^2 + K, ...)
COMPLEXITY = {"temperature": 0, "platt": 1, "classwise_temperature": 2, "beta": 2, "vector": 3, "dirichlet_odir": 4,
              "dirichlet": 5, "matrix": 5, "isotonic": 6}
RULES = ("one_se", "min")


@dataclass
class CalibratorSelection:
    """What :func:`select_calibrator` found.

    Attributes:
        best: the chosen family, refitted on every validation row.
        best_name: its name in the table.
        metric: the held-out score the choice minimised (``"nll"``, ``"ece"`` or ``"brier"``).
        rule: ``"one_se"`` (the simplest family within one standard error of the best) or ``"min"``.
        table: one row per candidate (and ``"none"``, the uncalibrated model): the mean and standard deviation
            over folds of each score, ``within_one_se`` (of the best mean, by the paired per-fold differences),
            the folds whose fit diverged, and the chosen settings (ODIR's grid point).
        cv: the number of folds.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> z = torch.randn(600, 3, generator=g, dtype=torch.float64)
        >>> y = torch.multinomial(z.softmax(1), 1, generator=g).squeeze(1)
        >>> found = select_calibrator(3 * z, y, candidates=["temperature", "vector"], cv=3)
        >>> [row["name"] for row in found.table]  # best first
        ['temperature', 'vector', 'none']
    """

    best: _Calibrator
    best_name: str
    metric: str
    table: list[dict[str, Any]] = field(default_factory=list)
    cv: int = 5
    rule: str = "one_se"

    def to_dict(self) -> dict[str, Any]:
        """The choice and the table, JSON-ready."""
        return {"best": self.best_name, "metric": self.metric, "rule": self.rule, "cv": self.cv, "table": self.table}

    def __str__(self) -> str:
        lines = [f"{'calibrator':<24}{'NLL':>16}{'ECE':>16}{'Brier':>16}  within 1 SE  diverged folds"]
        for row in self.table:
            cells = "".join(f"{row[m]:>9.4f} ±{row[m + '_sd']:.3f}" for m in METRICS)
            lines.append(f"{row['name']:<24}{cells}  {'yes' if row['within_one_se'] else 'no':>11}  "
                         f"{row['diverged_folds']}")
        rule = "simplest within one SE of the best" if self.rule == "one_se" else "best mean"
        return "\n".join(lines) + f"\nchosen ({rule}, held-out {self.metric}, {self.cv}-fold): {self.best_name}"


def _folds(y: np.ndarray, cv: int, seed: int) -> np.ndarray:
    """Fold of each row, stratified: each label's rows shuffled and dealt round-robin."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    offset = 0
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        fold[rows] = (np.arange(len(rows)) + offset) % cv
        offset += len(rows)  # the next label starts where this one stopped: folds of near-equal size
    return fold


def _probabilities(z: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(z) if z.ndim == 1 else torch.softmax(z, 1)


def _scores(probs: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    return {"nll": negative_log_likelihood(probs, y), "ece": expected_calibration_error(probs, y),
            "brier": brier_score(probs, y)}


def _cross_validate(make: Callable[[], _Calibrator] | None, z: torch.Tensor, y: torch.Tensor, fold: np.ndarray,
                    cv: int) -> tuple[dict[str, list[float]], int]:
    """Held-out scores of each fold (``make`` None: the uncalibrated model) and the folds whose fit diverged."""
    scores: dict[str, list[float]] = {m: [] for m in METRICS}
    diverged = 0
    for k in range(cv):
        held = torch.from_numpy(fold == k)
        if make is None:
            probs = _probabilities(z[held])
        else:
            with warnings.catch_warnings():  # counted in the table instead
                warnings.simplefilter("ignore")
                cal = make().fit(z[~held], y[~held])
            diverged += int(getattr(cal, "diverged_", False))
            probs = cal.predict_proba(z[held])
        for m, v in _scores(probs, y[held]).items():
            scores[m].append(v)
    return scores, diverged


def _row(name: str, scores: dict[str, list[float]], diverged: int, settings: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "folds": scores}
    for m in METRICS:
        row[m], row[m + "_sd"] = float(np.mean(scores[m])), float(np.std(scores[m]))
    row["diverged_folds"], row["settings"] = diverged, settings
    return row


def _check_candidates(candidates: Sequence[str] | None, binary: bool) -> list[str]:
    if candidates is None:
        names = list(BINARY_DEFAULT if binary else MULTICLASS_DEFAULT)
        if _missing("sklearn"):
            names.remove("isotonic")  # an optional dependency: left out of the default list
        return names
    if isinstance(candidates, str) or not candidates:
        raise ValueError(f"`candidates` must be a non-empty list of names from {sorted(FAMILIES)}; got {candidates!r}")
    for name in candidates:
        check_choice(name, "candidates", FAMILIES)
        if binary and name in _MULTICLASS_ONLY:
            raise ValueError(f"candidate {name!r} needs [N, K] logits; the logits are one binary logit per row")
        if not binary and name in _BINARY_ONLY:
            raise ValueError(f"candidate {name!r} is for one binary logit per row; the logits are [N, K]")
    return list(dict.fromkeys(candidates))


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


def select_calibrator(
    logits: Any,
    labels: Any,
    *,
    candidates: Sequence[str] | None = None,
    cv: int = 5,
    metric: str = "nll",
    odir_grid: Sequence[float] = ODIR_GRID,
    rule: str = "one_se",
    seed: int = 0,
) -> CalibratorSelection:
    """Choose a calibrator by cross-validated held-out score, and refit it on every row.

    Args:
        logits: validation logits ``[N, K]``, or ``[N]`` (one binary logit).
        labels: ``[N]`` integer labels.
        candidates: family names (default: temperature, class-wise temperature, vector, matrix, Dirichlet with
            ODIR and isotonic for ``[N, K]``; temperature, Platt, beta and isotonic for one logit). Also
            ``"dirichlet"`` (no penalty). Isotonic needs scikit-learn; it is left out of the default list
            without it.
        cv: folds (default 5), stratified by label.
        metric: what the choice minimises: ``"nll"`` (default; a proper scoring rule), ``"brier"`` or ``"ece"``.
        odir_grid: the values tried for ODIR's ``reg_lambda = reg_mu`` (default 1e-4 ... 1).
        rule: ``"one_se"`` (default: the simplest family whose held-out score is within one standard error of
            the best, module docstring) or ``"min"`` (the best mean).
        seed: seeds the fold assignment (default 0); the same seed gives the same table.

    Returns:
        A :class:`CalibratorSelection`: ``best`` (fitted on every row), ``best_name``, and ``table``, its rows
        sorted by the held-out ``metric``, with the uncalibrated model as row ``"none"`` (never chosen: if it
        scores best, calibrating does not help these logits, and the table shows it).

    Raises:
        ValueError: an unknown or inapplicable candidate, ``cv`` < 2 or more folds than rows of the rarest
            label, an unknown ``metric``, an empty ``odir_grid``; inputs as the calibrators' ``fit``.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> z = torch.randn(2000, 3, generator=g, dtype=torch.float64)
        >>> y = torch.multinomial(z.softmax(1), 1, generator=g).squeeze(1)
        >>> found = select_calibrator(3 * z, y, candidates=["temperature", "matrix"])  # over-confident by 3
        >>> found.best_name, abs(found.best.temperature_ - 3.0) < 0.3  # matrix scaling buys nothing beyond noise
        ('temperature', True)
    """
    z, y = _logits_labels(logits, labels)
    assert y is not None
    if z.ndim == 2 and z.shape[1] == 1:
        z = z[:, 0]
    if z.ndim not in (1, 2):
        raise ValueError(f"`logits` must be [N, K] or [N]; got {fmt_shape(z.shape)}")
    z = z.to(torch.float64)
    metric = check_choice(metric, "metric", METRICS)
    rule = check_choice(rule, "rule", RULES)
    cv = check_int(cv, "cv", low=2)
    names = _check_candidates(candidates, binary=z.ndim == 1)
    grid = [float(v) for v in odir_grid]
    if not grid:
        raise ValueError("`odir_grid` must hold at least one value")
    y_np = y.cpu().numpy()
    rarest = int(np.unique(y_np, return_counts=True)[1].min())
    if rarest < cv:
        raise ValueError(f"cv={cv} folds need at least {cv} rows of every label; the rarest label has {rarest}")
    fold = _folds(y_np, cv, seed)

    table, makers = [], {}
    for name in names:
        settings_list = [{"reg_lambda": v, "reg_mu": v} for v in grid] if name == "dirichlet_odir" else [{}]
        best_row, best_make = None, None
        for settings in settings_list:
            def make(name: str = name, settings: dict[str, Any] = settings) -> _Calibrator:
                return FAMILIES[name](**settings)

            row = _row(name, *_cross_validate(make, z, y, fold, cv), settings)
            if best_row is None or row[metric] < best_row[metric]:
                best_row, best_make = row, make
        table.append(best_row)
        makers[name] = best_make
    table.append(_row("none", *_cross_validate(None, z, y, fold, cv), {}))
    table.sort(key=lambda r: (math.inf if math.isnan(r[metric]) else r[metric]))
    best_name = _choose(table, metric, rule, cv)
    for row in table:
        row.pop("folds")
    best = makers[best_name]().fit(z, y)
    return CalibratorSelection(best=best, best_name=best_name, metric=metric, table=table, cv=cv, rule=rule)


def _choose(table: list[dict[str, Any]], metric: str, rule: str, cv: int) -> str:
    """Mark each row ``within_one_se`` of the best calibrator and return the chosen name (module docstring)."""
    rows = [r for r in table if r["name"] != "none"]
    best = rows[0]
    for row in table:
        d = np.asarray(row["folds"][metric]) - np.asarray(best["folds"][metric])
        se = float(np.std(d, ddof=1) / math.sqrt(cv))
        row["within_one_se"] = bool(np.mean(d) <= se)
    if rule == "min":
        return best["name"]
    return min((r for r in rows if r["within_one_se"]), key=lambda r: (COMPLEXITY[r["name"]], r[metric]))["name"]
