"""Evaluation metrics for graded (ordinal) labels. Calibration metrics live in ``medloss.calibration``."""

from .ordinal import (
    accuracy,
    kendall_tau,
    mean_absolute_error,
    ordinal_confusion_matrix,
    quadratic_weighted_kappa,
    sensitivity_specificity,
    spearman_rho,
    within_k_accuracy,
)

__all__ = [
    "accuracy",
    "kendall_tau",
    "mean_absolute_error",
    "ordinal_confusion_matrix",
    "quadratic_weighted_kappa",
    "sensitivity_specificity",
    "spearman_rho",
    "within_k_accuracy",
]
