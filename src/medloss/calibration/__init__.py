"""Calibration: metrics with confidence intervals, reliability diagrams and post-hoc calibrators.

Metrics take ``probs`` ``[N, K]`` (top-label) or ``[N]`` / ``[N, 1]`` (binary, P(y = 1)) and
integer ``labels``; torch or NumPy. Calibrators take logits. The clinical calibration hierarchy
(calibration-in-the-large, slope, intercept, ICI / E90 / Emax, Spiegelhalter's test) equals R's
``rms::val.prob``: :func:`clinical_calibration`. See ``docs/calibration.md``.
"""

from .bootstrap import ConfidenceInterval, bootstrap_ci, bootstrap_clinical, clinical_calibration_by_subgroup
from .calibrators import IsotonicCalibrator, PlattScaler, TemperatureScaler, load_calibrator
from .clinical import (
    adjust_prevalence,
    calibration_in_the_large,
    calibration_intercept,
    calibration_slope,
    clinical_calibration,
    derivation_prevalence,
    hosmer_lemeshow_test,
    integrated_calibration_index,
    lowess_smooth,
    smoothed_calibration_curve,
    spiegelhalter_test,
)
from .conformal import ConformalClassifier, ConformalOrdinal, ConformalSegmentation, conformal_quantile
from .linear import BetaCalibrator, ClasswiseTemperatureScaler, DirichletCalibrator, MatrixScaler, VectorScaler
from .metrics import (
    CalibrationAccumulator,
    ReliabilityCurve,
    adaptive_calibration_error,
    brier_score,
    classwise_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_curve,
)
from .ordinal import OrdinalTemperatureScaler, ordinal_calibration_error
from .plots import plot_clinical_calibration, plot_reliability_diagram, save_figure
from .selection import CalibratorSelection, select_calibrator

__all__ = [
    "BetaCalibrator",
    "CalibrationAccumulator",
    "CalibratorSelection",
    "ClasswiseTemperatureScaler",
    "ConfidenceInterval",
    "ConformalClassifier",
    "ConformalOrdinal",
    "ConformalSegmentation",
    "DirichletCalibrator",
    "IsotonicCalibrator",
    "MatrixScaler",
    "OrdinalTemperatureScaler",
    "PlattScaler",
    "ReliabilityCurve",
    "TemperatureScaler",
    "VectorScaler",
    "adaptive_calibration_error",
    "adjust_prevalence",
    "bootstrap_ci",
    "bootstrap_clinical",
    "brier_score",
    "calibration_in_the_large",
    "calibration_intercept",
    "calibration_slope",
    "classwise_calibration_error",
    "clinical_calibration",
    "clinical_calibration_by_subgroup",
    "conformal_quantile",
    "derivation_prevalence",
    "expected_calibration_error",
    "hosmer_lemeshow_test",
    "integrated_calibration_index",
    "load_calibrator",
    "lowess_smooth",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "ordinal_calibration_error",
    "plot_clinical_calibration",
    "plot_reliability_diagram",
    "reliability_curve",
    "save_figure",
    "select_calibrator",
    "smoothed_calibration_curve",
    "spiegelhalter_test",
]
