"""Test-set metrics before and after calibration, with bootstrap confidence intervals."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, classification_report, confusion_matrix, f1_score, roc_auc_score

from ..calibration import (
    BetaCalibrator,
    ClasswiseTemperatureScaler,
    ConformalClassifier,
    ConformalOrdinal,
    DirichletCalibrator,
    IsotonicCalibrator,
    MatrixScaler,
    PlattScaler,
    TemperatureScaler,
    VectorScaler,
    adaptive_calibration_error,
    bootstrap_ci,
    bootstrap_clinical,
    brier_score,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    select_calibrator,
)
from ..metrics import (
    kendall_tau,
    mean_absolute_error,
    quadratic_weighted_kappa,
    sensitivity_specificity,
    spearman_rho,
    within_k_accuracy,
)

CALIBRATORS = {
    "temperature": TemperatureScaler, "classwise_temperature": ClasswiseTemperatureScaler, "vector": VectorScaler,
    "matrix": MatrixScaler, "dirichlet": DirichletCalibrator, "beta": BetaCalibrator, "platt": PlattScaler,
    "isotonic": IsotonicCalibrator,
}
#: calibrators of one binary logit only, and of [N, K] logits only
BINARY_ONLY = ("platt", "beta")
MULTICLASS_ONLY = ("classwise_temperature", "vector", "matrix", "dirichlet")

#: one binning for every calibration number a report shows: the tables and the diagrams' legends
N_BINS = 15


def binning_note(n_bins: int = N_BINS) -> str:
    """The report's statement of the binning behind every ECE / MCE it shows (``--n-bins``)."""
    return (f"Calibration errors (ECE, MCE in tables and diagram legends) use {n_bins} equal-width confidence "
            f"bins (lo, hi]; the adaptive ECE uses {n_bins} equal-mass bins.")


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """``[N]`` positive-class logits -> P(y = 1); ``[N, K]`` logits / log-probabilities -> softmax."""
    return torch.sigmoid(logits) if logits.ndim == 1 else torch.softmax(logits, 1)


def predictions(probs: torch.Tensor) -> np.ndarray:
    return (probs >= 0.5).long().numpy() if probs.ndim == 1 else probs.argmax(1).numpy()


def fit_calibrator(method: str, logits: torch.Tensor, labels: np.ndarray, *, seed: int = 0):
    """The calibrator ``method`` fitted on validation rows; ``"auto"``: :func:`select_calibrator`'s choice, its
    table kept as ``selection_`` for the report."""
    if method == "auto":
        found = select_calibrator(logits, torch.from_numpy(labels), seed=seed)
        found.best.selection_ = found
        return found.best
    if method in BINARY_ONLY and logits.ndim != 1:
        raise ValueError(f"--method {method} is for binary models with one logit; use temperature, vector, "
                         "dirichlet or isotonic")
    if method in MULTICLASS_ONLY and logits.ndim != 2:
        raise ValueError(f"--method {method} needs [N, K] logits; for one binary logit use temperature, platt, "
                         "beta or isotonic")
    return CALIBRATORS[method]().fit(logits, torch.from_numpy(labels))


def conformal_report(method: str, alpha: float, cal_probs: torch.Tensor, cal_labels: np.ndarray,
                     test_probs: torch.Tensor, test_labels: np.ndarray) -> tuple[dict, torch.Tensor]:
    """Conformal sets calibrated on ``cal_*`` and evaluated on ``test_*``: (report, sets of the test rows)."""
    cp = ConformalOrdinal(alpha) if method == "ordinal" else ConformalClassifier(alpha, method)
    cp.fit(cal_probs, torch.from_numpy(cal_labels))
    report = cp.evaluate(test_probs, torch.from_numpy(test_labels))
    report.update(method=method, n_calibration=cp.n_calibration_, quantile=float(cp.quantile_))
    return report, cp.predict_sets(test_probs)


def calibration_metrics(probs: torch.Tensor, labels: np.ndarray, *, n_boot: int, seed: int,
                        n_bins: int = N_BINS, progress: bool | None = False) -> dict:
    y = torch.from_numpy(labels)
    out = {}
    for name, fn, kw in [
        ("ece", expected_calibration_error, {"n_bins": n_bins}),
        ("mce", maximum_calibration_error, {"n_bins": n_bins}),
        ("adaptive_ece", adaptive_calibration_error, {"n_bins": n_bins}),
        ("brier", brier_score, {}),
        ("nll", negative_log_likelihood, {}),
    ]:
        ci = bootstrap_ci(fn, probs, y, n_boot=n_boot, seed=seed, progress=progress, **kw)
        out[name] = ci.to_dict()
    return out


def classification_metrics(probs: torch.Tensor, labels: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    pred = predictions(probs)
    k = len(class_names)
    report = classification_report(labels, pred, labels=list(range(k)), target_names=class_names,
                                   output_dict=True, zero_division=0)
    cm = confusion_matrix(labels, pred, labels=list(range(k)))
    ss = sensitivity_specificity(pred, labels=labels, num_classes=k)["per_grade"]
    out: dict[str, Any] = {
        "accuracy": float((pred == labels).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, average="macro", labels=list(range(k)), zero_division=0)),
        "classification_report": report,
        "confusion_matrix": cm.tolist(),
        "sensitivity": ss["sensitivity"],
        "specificity": ss["specificity"],
    }
    if probs.ndim == 1 and len(np.unique(labels)) == 2:
        out["roc_auc"] = float(roc_auc_score(labels, probs.numpy()))
    elif probs.ndim == 2 and k == 2 and len(np.unique(labels)) == 2:  # two softmax columns: score of class 1
        out["roc_auc"] = float(roc_auc_score(labels, probs[:, 1].numpy()))
    elif probs.ndim == 2 and len(np.unique(labels)) == k:
        out["roc_auc_ovr"] = float(roc_auc_score(labels, probs.numpy(), multi_class="ovr"))
    return out


def ordinal_metrics(probs: torch.Tensor, labels: np.ndarray, k: int) -> dict[str, Any]:
    pred = predictions(probs)
    return {
        "qwk": quadratic_weighted_kappa(pred, labels, k),
        "linear_kappa": quadratic_weighted_kappa(pred, labels, k, weights="linear"),
        "mae": mean_absolute_error(pred, labels, k),
        "within_1": within_k_accuracy(pred, labels, 1, k),
        "kendall_tau_b": kendall_tau(pred, labels, k),
        "spearman_rho": spearman_rho(pred, labels, k),
        "threshold_sensitivity_specificity": sensitivity_specificity(pred, labels=labels, num_classes=k)["threshold"],
    }


#: the clinical hierarchy's numbers in reports, in order: (key, label)
CLINICAL_ROWS = [("calibration_in_the_large", "calibration-in-the-large (0 ideal)"),
                 ("slope", "calibration slope (1 ideal)"), ("intercept", "calibration intercept"),
                 ("e_avg", "ICI = Eavg (smoothed |p - observed|)"), ("e_90", "E90"), ("e_max", "Emax"),
                 ("spiegelhalter_z", "Spiegelhalter z"), ("c_statistic", "C statistic (val.prob)")]


def clinical_metrics(probs: torch.Tensor, labels: np.ndarray, task: str, *, n_boot: int, seed: int,
                     progress: bool | None = False) -> dict:
    """The clinical calibration hierarchy (R's rms::val.prob) with bootstrap intervals: for the positive
    class of a binary model (or class 1 of a two-column softmax), per class one-vs-rest for multiclass
    models, per threshold P(grade > k) for ordinal ones. Warnings (exact 0 / 1 probabilities, a class
    absent from the test labels) become ``notes``."""
    import warnings

    p = probs.detach().cpu().to(torch.float64)
    if p.ndim == 2 and p.shape[1] == 2 and task != "ordinal":
        p, kind = p[:, 1], "binary"
    else:
        kind = "binary" if p.ndim == 1 else ("per_threshold" if task == "ordinal" else "per_class")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        try:
            ci = bootstrap_clinical(p, labels, n_boot=n_boot, seed=seed, ordinal=kind == "per_threshold",
                                    progress=progress)
        except ValueError as err:  # one outcome in the test split, constant predictions
            return {"kind": kind, "metrics": None, "notes": [str(err)]}
    notes = sorted({str(w.message) for w in caught})
    if kind == "binary":
        metrics = {k: v.to_dict() for k, v in ci.items()}
    else:
        metrics = {str(j): {k: v.to_dict() for k, v in part.items()} for j, part in ci.items()}
    return {"kind": kind, "metrics": metrics, "notes": notes}


def evaluate(probs: torch.Tensor, labels: np.ndarray, class_names: list[str], task: str, *, n_boot: int,
             seed: int, progress: bool | None = False, clinical_rows: np.ndarray | None = None,
             n_bins: int = N_BINS) -> dict[str, Any]:
    """Calibration, clinical and classification metrics with bootstrap intervals. ``progress``: the
    bootstraps' progress bars (None: where they are long; False: none). ``clinical_rows``: a boolean mask of the
    rows the clinical hierarchy uses (:func:`finite_logit_rows`); every other metric uses every row."""
    keep = torch.from_numpy(np.flatnonzero(clinical_rows)) if clinical_rows is not None else None
    clinical = (clinical_metrics(probs, labels, task, n_boot=n_boot, seed=seed, progress=progress) if keep is None
                else clinical_metrics(probs[keep], labels[keep.numpy()], task, n_boot=n_boot, seed=seed,
                                      progress=progress))
    out = {"calibration": calibration_metrics(probs, labels, n_boot=n_boot, seed=seed, progress=progress,
                                              n_bins=n_bins),
           "clinical": clinical,
           "classification": classification_metrics(probs, labels, class_names)}
    if task == "ordinal":
        out["ordinal"] = ordinal_metrics(probs, labels, len(class_names))
    return out


def finite_logit_rows(*probs: torch.Tensor) -> np.ndarray:
    """The rows whose probabilities (every column, every tensor given) all lie strictly inside (0, 1): the rows the
    clinical hierarchy's logistic fits can use in every column of a before / after table, so that both columns
    are computed on the same rows."""
    keep = np.ones(probs[0].shape[0], dtype=bool)
    for p in probs:
        q = p.detach().cpu().to(torch.float64).reshape(p.shape[0], -1)
        keep &= ~((q <= 0.0) | (q >= 1.0)).any(1).numpy()
    return keep


def left_out_note(keep: np.ndarray, row_names: list[str]) -> str | None:
    """The note naming the rows :func:`finite_logit_rows` left out, or None when none was."""
    out = np.flatnonzero(~keep)
    if out.size == 0:
        return None
    named = ", ".join(row_names[i] for i in out[:20]) + (f" and {out.size - 20} more" if out.size > 20 else "")
    return (f"{out.size} of {keep.size} test rows have a probability of exactly 0 or 1 before or after calibration "
            f"(no finite logit; val.prob deletes such rows): the clinical calibration table leaves them out of both "
            f"columns, so that both use the same {int(keep.sum())} rows; every other table uses all {keep.size}. "
            f"Rows left out: {named}.")


# ----------------------------------------------------------------- what the report must flag and add
#: changes smaller than these are within the noise of a test split: NLL relative, the ECEs absolute
NLL_TOLERANCE = 0.01
ECE_TOLERANCE = 0.01
#: the metrics the verdict reads: (key, label, tolerance, relative)
VERDICT_METRICS = (("nll", "NLL", NLL_TOLERANCE, True), ("ece", "ECE", ECE_TOLERANCE, False),
                   ("adaptive_ece", "adaptive ECE", ECE_TOLERANCE, False))
VERDICT_RULE = (
    "Verdict rule (every run, both directions): a metric improved when calibration lowered it by more than its "
    f"tolerance and worsened when it raised it by more (NLL: {NLL_TOLERANCE:.0%} relative; ECE and adaptive ECE: "
    f"{ECE_TOLERANCE:g} absolute; smaller changes are within a test split's noise). Calibration \"hurt\" when any of "
    "the three worsened, \"improved\" when none worsened and at least one improved, \"no change\" otherwise, and "
    "\"not fitted\" when the calibrator could not be fitted on the validation split. The calibrated probabilities "
    "are recommended unless calibration hurt or was not fitted; operating points use the recommended ones.")


def calibration_check(before: dict[str, Any], after: dict[str, Any], *, unfitted: str | None = None) -> dict[str, Any]:
    """Whether calibration helped on the held-out test split, and which probabilities to use, by
    :data:`VERDICT_RULE`. ``unfitted``: why the calibrator could not be fitted (the verdict is then "not fitted").

    Returns:
        ``{"verdict", "recommended", "changes": {metric: {"before", "after", "change"}}, "unfitted",
        "nll_before", "nll_after"}``: ``change`` is "improved", "worsened" or "no change".
    """
    changes = {}
    for key, _, tolerance, relative in VERDICT_METRICS:
        b, a = before["calibration"][key]["estimate"], after["calibration"][key]["estimate"]
        margin = tolerance * abs(b) if relative else tolerance
        changes[key] = {"before": b, "after": a,
                        "change": "improved" if a < b - margin else "worsened" if a > b + margin else "no change"}
    moves = {c["change"] for c in changes.values()}
    verdict = "hurt" if "worsened" in moves else "improved" if "improved" in moves else "no change"
    if unfitted is not None:
        verdict = "not fitted"
    return {"verdict": verdict, "recommended": "uncalibrated" if verdict in ("hurt", "not fitted") else "calibrated",
            "changes": changes, "unfitted": unfitted,
            "nll_before": changes["nll"]["before"], "nll_after": changes["nll"]["after"]}


def why_uncalibrated(check: dict[str, Any]) -> str:
    """Why the verdict recommends the uncalibrated probabilities, in one clause (stderr, ``predict``)."""
    if check.get("verdict") == "not fitted":
        return "the calibrator could not be fitted (the model separates the validation split)"
    worse = ", ".join(f"{k} {c['before']:.4f} -> {c['after']:.4f}" for k, c in check.get("changes", {}).items()
                      if c["change"] == "worsened")
    if not worse:  # a run written before the verdict rule has only the NLLs
        worse = f"nll {check['nll_before']:.4f} -> {check['nll_after']:.4f}"
    return f"calibration hurt on the held-out test split ({worse})"


def verdict_sentence(check: dict[str, Any], calibrator: str) -> str:
    """The verdict with the change of each metric it read, e.g. 'hurt: ECE worsened (0.059 -> 0.105); ...'."""
    parts = [f"{label} {check['changes'][key]['change']} ({check['changes'][key]['before']:.4f} -> "
             f"{check['changes'][key]['after']:.4f})" for key, label, _, _ in VERDICT_METRICS]
    advice = {"hurt": "use the uncalibrated probabilities",
              "improved": f"the {calibrator}-scaled probabilities are recommended",
              "no change": f"the {calibrator}-scaled probabilities are as good as the uncalibrated ones",
              "not fitted": "the probabilities are uncalibrated"}[check["verdict"]]
    return f"Calibration verdict: {check['verdict']} — {'; '.join(parts)}; {advice}."


#: probabilities within this of 0 or 1 print as 0.0000 / 1.0000, claim near-certainty, and cannot be told apart by a
#: decision threshold: the report counts them
SATURATION = 1e-4


def saturated(probs: torch.Tensor | np.ndarray) -> int:
    """How many rows are saturated: a binary probability within :data:`SATURATION` of 0 or 1, or a top class
    probability within it of 1."""
    q = torch.as_tensor(probs).detach().cpu().to(torch.float64)
    top = q if q.ndim == 1 else q.amax(1)
    return int(((top < SATURATION) | (top > 1.0 - SATURATION)).sum())


def saturation_note(check: dict[str, Any]) -> str | None:
    """A flag when calibration saturated probabilities (more rows within 1e-4 of 0 or 1 than before)."""
    sat = check.get("saturated")
    if not sat or sat["calibrated"] <= sat["uncalibrated"]:
        return None
    return (f"Saturation: {sat['calibrated']} of {sat['n']} calibrated test probabilities lie within "
            f"{SATURATION:g} of 0 or 1 (uncalibrated: {sat['uncalibrated']}). They claim near-certainty, print as "
            "0.0000 / 1.0000, and no decision threshold can tell them apart; a calibration slope below 1 on the test "
            "split says the certainty is not earned.")


def wilson_interval(successes: int, trials: int) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion (Wilson 1927; scipy's ``binomtest``): the interval
    clinical papers report for sensitivity, specificity, PPV and NPV; (nan, nan) for no trials."""
    if trials == 0:
        return float("nan"), float("nan")
    from scipy.stats import binomtest

    ci = binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def threshold_for_sensitivity(p: np.ndarray, y: np.ndarray, target: float) -> float:
    """The highest threshold ``t`` with sensitivity ``P(p >= t | y = 1) >= target``."""
    pos = np.sort(p[y == 1])[::-1]
    if len(pos) == 0:
        return float("nan")
    k = int(np.ceil(target * len(pos)))  # at least k positives at or above t
    return float(pos[min(k, len(pos)) - 1])


def threshold_for_specificity(p: np.ndarray, y: np.ndarray, target: float) -> float:
    """The lowest threshold ``t`` with specificity ``P(p < t | y = 0) >= target``."""
    neg = np.sort(p[y == 0])
    if len(neg) == 0:
        return float("nan")
    k = int(np.ceil(target * len(neg)))  # at least k negatives strictly below t
    return float(np.nextafter(neg[min(k, len(neg)) - 1], np.inf))


def operating_points(p_val: np.ndarray, y_val: np.ndarray, p_test: np.ndarray, y_test: np.ndarray) -> list[dict]:
    """Decision thresholds clinicians ask for, chosen on validation (sensitivity 0.90 / 0.95,
    specificity 0.90 / 0.95), with the test sensitivity, specificity, PPV and NPV they give and
    Wilson 95% intervals. Binary tasks; ``p`` is the (recommended) probability of the positive class."""
    rows = []
    for kind, target in (("sensitivity", 0.90), ("sensitivity", 0.95), ("specificity", 0.90), ("specificity", 0.95)):
        choose = threshold_for_sensitivity if kind == "sensitivity" else threshold_for_specificity
        t = choose(p_val, y_val, target)
        pred = p_test >= t
        tp = int(np.sum(pred & (y_test == 1)))
        fn = int(np.sum(~pred & (y_test == 1)))
        tn = int(np.sum(~pred & (y_test == 0)))
        fp = int(np.sum(pred & (y_test == 0)))
        row = {"chosen_for": f"{kind} >= {target:.2f} on validation", "threshold": t}
        for name, k, n in (("sensitivity", tp, tp + fn), ("specificity", tn, tn + fp), ("ppv", tp, tp + fp),
                           ("npv", tn, tn + fn)):
            low, high = wilson_interval(k, n)
            row[name] = {"estimate": k / n if n else float("nan"), "low": low, "high": high, "n": n}
        rows.append(row)
    return rows
