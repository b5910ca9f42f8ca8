"""Test-set metrics before and after calibration, with bootstrap confidence intervals."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, classification_report, confusion_matrix, f1_score, roc_auc_score

from ..calibration import (
    IsotonicCalibrator,
    PlattScaler,
    TemperatureScaler,
    adaptive_calibration_error,
    bootstrap_ci,
    brier_score,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
)
from ..metrics import (
    kendall_tau,
    mean_absolute_error,
    quadratic_weighted_kappa,
    sensitivity_specificity,
    spearman_rho,
    within_k_accuracy,
)

CALIBRATORS = {"temperature": TemperatureScaler, "platt": PlattScaler, "isotonic": IsotonicCalibrator}

#: one binning for every calibration number a report shows: the tables and the diagrams' legends
N_BINS = 15
BINNING_NOTE = (f"Calibration errors (ECE, MCE in tables and diagram legends) use {N_BINS} equal-width confidence "
                f"bins (lo, hi]; the adaptive ECE uses {N_BINS} equal-mass bins.")


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """``[N]`` positive-class logits -> P(y = 1); ``[N, K]`` logits / log-probabilities -> softmax."""
    return torch.sigmoid(logits) if logits.ndim == 1 else torch.softmax(logits, 1)


def predictions(probs: torch.Tensor) -> np.ndarray:
    return (probs >= 0.5).long().numpy() if probs.ndim == 1 else probs.argmax(1).numpy()


def fit_calibrator(method: str, logits: torch.Tensor, labels: np.ndarray):
    if method == "platt" and logits.ndim != 1:
        raise ValueError("--calibrator platt is for binary models with one logit; use temperature or isotonic")
    return CALIBRATORS[method]().fit(logits, torch.from_numpy(labels))


def calibration_metrics(probs: torch.Tensor, labels: np.ndarray, *, n_boot: int, seed: int,
                        n_bins: int = N_BINS) -> dict:
    y = torch.from_numpy(labels)
    out = {}
    for name, fn, kw in [
        ("ece", expected_calibration_error, {"n_bins": n_bins}),
        ("mce", maximum_calibration_error, {"n_bins": n_bins}),
        ("adaptive_ece", adaptive_calibration_error, {"n_bins": n_bins}),
        ("brier", brier_score, {}),
        ("nll", negative_log_likelihood, {}),
    ]:
        ci = bootstrap_ci(fn, probs, y, n_boot=n_boot, seed=seed, **kw)
        out[name] = ci.to_dict()
    return out


def classification_metrics(probs: torch.Tensor, labels: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    pred = predictions(probs)
    k = len(class_names)
    report = classification_report(labels, pred, labels=list(range(k)), target_names=class_names,
                                   output_dict=True, zero_division=0)
    cm = confusion_matrix(labels, pred, labels=list(range(k)))
    ss = sensitivity_specificity(labels, pred, k)["per_grade"]
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
        "qwk": quadratic_weighted_kappa(labels, pred, k),
        "linear_kappa": quadratic_weighted_kappa(labels, pred, k, weights="linear"),
        "mae": mean_absolute_error(labels, pred, k),
        "within_1": within_k_accuracy(labels, pred, 1, k),
        "kendall_tau_b": kendall_tau(labels, pred, k),
        "spearman_rho": spearman_rho(labels, pred, k),
        "threshold_sensitivity_specificity": sensitivity_specificity(labels, pred, k)["threshold"],
    }


def evaluate(probs: torch.Tensor, labels: np.ndarray, class_names: list[str], task: str, *, n_boot: int,
             seed: int) -> dict[str, Any]:
    out = {"calibration": calibration_metrics(probs, labels, n_boot=n_boot, seed=seed),
           "classification": classification_metrics(probs, labels, class_names)}
    if task == "ordinal":
        out["ordinal"] = ordinal_metrics(probs, labels, len(class_names))
    return out
