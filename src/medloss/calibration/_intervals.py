"""Bootstrap interval bounds: the bias-corrected and accelerated (BCa) interval of Efron (1987), the
grouped jackknife behind its acceleration, and the note an interval carries when it cannot contain
its estimate.

Calibration errors are biased estimators: binning noise makes a small sample look miscalibrated,
and a resample (rows repeated) looks more so, so the percentile interval of ECE, MCE or the ICI can
lie entirely above the estimate. BCa shifts the percentiles by the bias the resamples show
(``z0``, the normal quantile of the fraction of resamples below the estimate, ties counted half,
as ``scipy.stats.bootstrap`` defines it) and by the skew of the jackknife
(the acceleration ``a``). Where every resample lies on one side of the estimate no bias correction
exists (``z0`` is infinite): the percentile interval is kept, with a note saying so.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

#: the most jackknife groups behind an acceleration: more units (rows, clusters) are split at random into
#: this many groups and one group is left out at a time (a grouped jackknife, as ``bcaboot::bcajack``'s ``m``)
JACKKNIFE_GROUPS = 100

#: why an estimator is biased, for the notes of the metrics whose bias is known
BIAS_CAUSES = {
    "ece": "binning noise makes a finite sample look miscalibrated, more so a resample with repeated rows",
    "smoothed": "the smoothed calibration curve of a resample follows its noise, so its distance from the "
                "diagonal is larger",
    "max": "a maximum over bins or risks is reached by the noisiest one",
}


def jackknife_groups(n_units: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The units left out by each jackknife value: one unit at a time up to :data:`JACKKNIFE_GROUPS` units,
    else that many random groups of (nearly) equal size."""
    if n_units <= JACKKNIFE_GROUPS:
        return [np.array([i]) for i in range(n_units)]
    return np.array_split(rng.permutation(n_units), JACKKNIFE_GROUPS)


def jackknife_values(value_without: Callable[[np.ndarray], float], groups: list[np.ndarray]) -> np.ndarray:
    """``value_without(units)`` for each group (NaN where it is undefined: it raised ValueError)."""
    out = np.full(len(groups), np.nan)
    for i, units in enumerate(groups):
        try:
            out[i] = value_without(units)
        except ValueError:  # e.g. one outcome left: that value does not exist
            continue
    return out


def acceleration(jackknife: np.ndarray) -> float:
    """The BCa acceleration from jackknife values (Efron & Tibshirani 1993, eq. 14.15); 0 when undefined."""
    v = np.asarray(jackknife, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 3:
        return 0.0
    d = v.mean() - v
    den = 6.0 * float((d**2).sum()) ** 1.5
    return float((d**3).sum()) / den if den > 0 else 0.0


def _normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def bounds(stats: np.ndarray, estimate: float, jackknife: np.ndarray | None, level: float, *,
           interval: str = "bca", metric: str | None = None) -> tuple[float, float, str, str | None]:
    """``(low, high, interval used, note)`` from the bootstrap values ``stats`` of ``estimate``.

    ``interval="bca"``: BCa bounds with the acceleration of ``jackknife``; the percentile bounds (``"percentile"``)
    where no bias correction exists. ``note`` says why an interval does not hold its estimate strictly inside
    (``metric`` picks a known cause from :data:`BIAS_CAUSES`), and when BCa's bounds fall among the most
    extreme resamples; None otherwise.
    """
    from scipy.special import ndtr, ndtri

    v = np.asarray(stats, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0 or not math.isfinite(estimate):
        return math.nan, math.nan, interval, None
    alpha = (1.0 - level) / 2.0
    used, note = "percentile", None
    quantiles = np.array([alpha, 1.0 - alpha])
    below = 0.5 * float(np.mean(v < estimate) + np.mean(v <= estimate))  # ties count half, as scipy's
    if interval == "bca":
        if 0.0 < below < 1.0:
            z0, a = float(ndtri(below)), acceleration(jackknife if jackknife is not None else np.array([]))
            z = ndtri(quantiles)
            quantiles = ndtr(z0 + (z0 + z) / (1.0 - a * (z0 + z)))
            used = "bca"
        else:
            note = "no bias-corrected interval exists (every resample lies on one side): percentile interval"
    low, high = (float(q) for q in np.quantile(v, quantiles))
    placement = _placement(v, estimate, low, high, metric)
    if placement is not None:
        note = placement if note is None else f"{note}; {placement}"
    # the correction pushed a bound into the last resample of a tail (not merely too few resamples for any tail)
    if used == "bca" and min(quantiles[0], 1.0 - quantiles[1]) * v.size < 1.0 <= alpha * v.size:
        extreme = ("its corrected bounds fall among the most extreme resamples: more resamples (n_boot) would "
                   "steady them")
        note = extreme if note is None else f"{note}; {extreme}"
    return low, high, used, note


def _placement(v: np.ndarray, estimate: float, low: float, high: float, metric: str | None) -> str | None:
    """Why an interval does not hold its estimate strictly inside, or None when it does."""
    cause = BIAS_CAUSES.get(metric or "")
    because = f" ({cause})" if cause else ""
    if estimate < low or estimate > high:
        above, below = float(np.mean(v > estimate)), float(np.mean(v < estimate))
        upward = above >= below
        where = "above" if estimate < low else "below"
        text = (f"the interval lies {where} the estimate: {max(above, below):.0%} of resamples lie "
                f"{'above' if upward else 'below'} it, so the estimator is biased {'upward' if upward else 'downward'} "
                f"at this sample size{because}")
        if (where == "below") == upward:  # BCa's correction of a bias that large carries the interval past it
            text += ", and the bias correction carries the interval past the estimate"
        return text
    if estimate in (low, high) and low < high:
        tie = float(np.mean(v == estimate))
        return (f"the estimate is the interval's {'upper' if estimate == high else 'lower'} bound: {tie:.0%} of "
                f"resamples equal it{because}")
    return None
