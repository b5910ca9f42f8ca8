"""The clinical calibration hierarchy as medical journals report it (TRIPOD; Van Calster et al. 2016,
2019; Austin & Steyerberg 2019), equal to R's ``rms::val.prob``.

For binary positive-class probabilities ``p`` and outcomes ``y``:

- calibration-in-the-large (CITL): ``a`` in ``logit P(y) = a + 1 * logit(p)`` (slope fixed at 1
  by an offset; R: ``glm(y ~ offset(qlogis(p)), family = binomial)``). 0 when the mean risk is right.
- calibration intercept and slope: ``(a, b)`` in ``logit P(y) = a + b * logit(p)`` (val.prob's
  "Intercept" and "Slope"). A slope below 1 means over-confident predictions (too extreme), above 1
  under-confident ones.
- ``e_avg`` (the integrated calibration index, ICI), ``e_90``, ``e_max``: the mean, 90th
  percentile (R's quantile type 7) and maximum of ``|p - s(p)|``, where ``s`` is val.prob's
  smoothed calibration curve: ``lowess(p, y, iter = 0)`` with R's defaults (span 2/3, ``delta`` 1 %
  of the range of p) read back at every ``p`` with tied ``p`` averaged (``approx(ties = mean)``).
- Spiegelhalter's z test: ``z = sum (y - p)(1 - 2p) / sqrt(sum (1 - 2p)^2 p (1 - p))``, two-sided p-value.
- Brier score ``mean (p - y)^2`` and the C statistic (area under the ROC curve).

Conventions shared with val.prob: probabilities of exactly 0 or 1 have no finite logit and are left
out of the logistic fits (CITL, intercept, slope, C statistic) with a warning; every other number
uses all samples. The C statistic is val.prob's "C (ROC)", which rms (6.5) computes from the
probabilities grouped into 5000 bins of width 0.0002 (bin ``floor(5000 p) + 1``), pairs in one bin
counting as ties: it equals val.prob's value and differs from the exact area under the ROC curve
(``sklearn.metrics.roc_auc_score``) only through pairs closer than 0.0002 (by 3e-5 on 300 samples).
Everything runs in float64 on the host: the fits and the smoother are sequential evaluation-time
computations, not part of a training step.

The logistic fits are Newton-Raphson to convergence (change < 1e-12); when the outcome is
separated by the predictions the maximum-likelihood estimate does not exist: the fit returns NaN
with a ``RuntimeWarning`` (rms fails to fit there).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from .._validation import check_number
from ._inputs import as_probs_labels

#: keys of :func:`clinical_calibration`'s result for binary input, in order
CLINICAL_KEYS = (
    "calibration_in_the_large",
    "intercept",
    "slope",
    "e_avg",
    "e_90",
    "e_max",
    "spiegelhalter_z",
    "spiegelhalter_p",
    "brier",
    "c_statistic",
    "dxy",
    "r2",
    "d",
    "d_chisq",
    "u",
    "u_chisq",
    "u_p",
    "q",
    "n",
    "events",
)

_NEWTON_TOL = 1e-12
_NEWTON_MAXIT = 100


# ------------------------------------------------------------------------------------ inputs
def _binary_arrays(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 probabilities and 0/1 outcomes for the binary functions."""
    p, y = as_probs_labels(probs, labels)
    if p.ndim != 1:
        raise ValueError(
            "`probs` must be [N] positive-class probabilities for this function; for [N, K] input use "
            "clinical_calibration(probs, labels) (one-vs-rest per class, or ordinal=True per threshold)"
        )
    return _checked_binary(p.detach().cpu().to(torch.float64).numpy(), y.detach().cpu().numpy())


def _checked_binary(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = y.astype(np.float64)
    events = y.sum()
    if events == 0 or events == len(y):
        raise ValueError(
            f"`labels` hold one class only ({'all 1' if events else 'all 0'} in {len(y)} samples): calibration "
            "slope, intercept and the C statistic need both outcomes"
        )
    return p, y


def _logit(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(p / (1.0 - p))  # R's qlogis: log(p / (1 - p)), +-inf at 1 and 0


def _finite_logits(p: np.ndarray, y: np.ndarray, warn: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Logits of the probabilities strictly inside (0, 1) and their outcomes (val.prob's rule)."""
    lg = _logit(p)
    keep = np.isfinite(lg)
    n_out = int((~keep).sum())
    if n_out and warn:
        rows = np.flatnonzero(~keep)
        said = ", ".join(str(i) for i in rows[:10]) + (f" and {n_out - 10} more" if n_out > 10 else "")
        warnings.warn(
            f"{n_out} observations deleted from the logistic calibration fits (rows {said}, counting from 0): "
            "probabilities of exactly 0 or 1 have no finite logit (as rms::val.prob does)",
            RuntimeWarning,
            stacklevel=3,
        )
    return lg[keep], y[keep]


# ---------------------------------------------------------------------------- logistic fits
def _binomial_loglik(eta: np.ndarray, y: np.ndarray) -> float:
    """``sum y eta - log(1 + e^eta)``, the Bernoulli log-likelihood of logits ``eta`` (finite for any eta)."""
    return float(np.dot(y, eta) - np.logaddexp(0.0, eta).sum())


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # one pass, no overflow


def _newton(design: np.ndarray, offset: np.ndarray, y: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Maximum-likelihood coefficients of ``logit P(y) = offset + design @ beta`` (Newton-Raphson with
    step halving); NaN with a warning when the estimate does not exist (separation)."""
    beta = start.astype(np.float64).copy()
    loglik = _binomial_loglik(offset + design @ beta, y)
    for _ in range(_NEWTON_MAXIT):
        mu = _sigmoid(offset + design @ beta)
        score = design.T @ (y - mu)
        info = (design * (mu * (1.0 - mu))[:, None]).T @ design
        try:
            step = np.linalg.solve(info, score)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)):
            break
        scale = 1.0
        while True:
            trial = beta + scale * step
            new = _binomial_loglik(offset + design @ trial, y)
            if new >= loglik - 1e-12 * abs(loglik) or scale < 1e-10:
                break
            scale /= 2.0
        beta, loglik = trial, new
        if np.max(np.abs(scale * step)) < _NEWTON_TOL * max(1.0, float(np.max(np.abs(beta)))):
            return beta
    warnings.warn(
        "the logistic calibration fit did not converge: the outcome is (quasi-)separated by the predicted "
        "logits, so the maximum-likelihood intercept / slope do not exist; returning NaN",
        RuntimeWarning,
        stacklevel=4,
    )
    return np.full_like(beta, np.nan)


def _recalibration_fit(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    design = np.stack([np.ones_like(logits), logits], 1)
    a, b = _newton(design, np.zeros_like(logits), y, np.array([0.0, 1.0]))
    return float(a), float(b)


def _citl_fit(logits: np.ndarray, y: np.ndarray) -> float:
    (a,) = _newton(np.ones((len(logits), 1)), logits, y, np.zeros(1))
    return float(a)


# ------------------------------------------------------------------------- smoother (lowess)
#: window entries computed at once by :func:`_lowess_fits` (fits x window width): 256 KB per array, cache-sized
_LOWESS_BLOCK = 1 << 15


def _lowess_fits(x: np.ndarray, y: np.ndarray, at: np.ndarray, nleft: np.ndarray, ns: int) -> np.ndarray:
    """R's ``lowess`` local fits (clowess's ``lowest``) at the sorted points ``x[at]``: tricube-weighted local
    linear fits from the windows starting at ``nleft`` (0-based) of ``ns`` sorted points, extended to the right
    over points within the bandwidth; ``y[at]`` where every weight is zero. The windows are gathered into a
    ``[fits, width]`` block (as many fits as keep it under :data:`_LOWESS_BLOCK` entries) instead of a Python
    loop over the fitted points: the same work as the loop, vectorised."""
    n = len(x)
    xs = x[at]
    h = np.maximum(xs - x[nleft], x[nleft + ns - 1] - xs)
    ends = np.searchsorted(x, xs + h, side="right")  # past the last point within h of xs
    width = int((ends - nleft).max())
    spread = 0.001 * (x[-1] - x[0])
    out = np.empty(len(at))
    step = max(1, _LOWESS_BLOCK // width)
    for s in range(0, len(at), step):
        b = slice(s, s + step)
        idx = nleft[b, None] + np.arange(width)[None, :]
        valid = idx < ends[b, None]
        idx = np.minimum(idx, n - 1)
        xw, hb, xb = x[idx], h[b, None], xs[b]
        r = np.abs(xw - xb[:, None])
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(valid & (r <= 0.999 * hb), np.where(r <= 0.001 * hb, 1.0, (1.0 - (r / hb) ** 3) ** 3), 0.0)
        a = w.sum(1)
        empty = a <= 0.0
        w /= np.where(empty, 1.0, a)[:, None]
        center = (w * xw).sum(1)
        dx = xw - center[:, None]
        c = (w * dx * dx).sum(1)
        slope = (hb[:, 0] > 0.0) & (np.sqrt(c) > spread)
        with np.errstate(invalid="ignore", divide="ignore"):
            factor = np.where(slope[:, None], (xb - center)[:, None] / c[:, None] * dx + 1.0, 1.0)
        out[b] = np.where(empty, y[at[b]], (w * factor * y[idx]).sum(1))
    return out


def lowess_smooth(
    x: Any, y: Any, *, frac: float = 2.0 / 3.0, delta: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """R's ``lowess(x, y, f = frac, iter = 0, delta)``: the sorted ``x`` and the smoothed values.

    Cleveland's (1979) locally weighted linear regression without robustness iterations: at each
    fitted point the ``floor(frac * n)`` nearest neighbours (at least 2) are weighted with the
    tricube kernel; points within ``delta`` (default 1 % of the range of ``x``) of the last fitted
    point are linearly interpolated instead of fitted, as R does. Sorting is stable, so tied ``x``
    keep their order.

    Args:
        x: ``[N]`` abscissae.
        y: ``[N]`` values.
        frac: the share of points in each local fit, in (0, 1] (default 2/3, R's).
        delta: the interpolation distance (default None: 1 % of the range of ``x``).

    Returns:
        ``(sorted x, smoothed y)``, float64 arrays.

    Raises:
        ValueError: ``x`` and ``y`` empty or of different lengths, ``frac`` outside (0, 1].

    Examples:
        >>> xs, fit = lowess_smooth([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0, 0, 1, 0, 1, 1])
        >>> [round(float(v), 4) for v in fit]  # R: round(lowess(x, y, iter = 0)$y, 4)
        [-0.1198, 0.2863, 0.4274, 0.5726, 0.7137, 1.1198]
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape or x.size == 0:
        raise ValueError(f"`x` and `y` must be non-empty and of equal length; got {x.size} and {y.size}")
    frac = check_number(frac, "frac", low=0.0, high=1.0, low_inclusive=False)
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    n = len(x)
    if delta is None:
        delta = 0.01 * (x[-1] - x[0])
    ys = np.empty(n)
    if n < 2:
        ys[:] = y
        return x, ys
    ns = max(2, min(n, int(frac * n + 1e-7)))
    # which points are fitted, and each one's window, depend on x only: find them first, fit them at once
    fitted, starts, nleft, i = [], [], 0, 0
    while True:
        if nleft + ns < n:
            # slide the window right while that brings its far end closer to x[i]: the condition is
            # monotone in the window start (rounding is monotone), so a binary search finds the stop
            lo, hi = nleft, n - ns
            while lo < hi:
                mid = (lo + hi) // 2
                if x[i] - x[mid] > x[mid + ns] - x[i]:
                    lo = mid + 1
                else:
                    hi = mid
            nleft = lo
        fitted.append(i)
        starts.append(nleft)
        last = max(i, int(np.searchsorted(x, x[i], side="right")) - 1)  # ties of the fitted point share its value
        if last >= n - 1:
            break
        i = max(last + 1, int(np.searchsorted(x, x[i] + delta, side="right")) - 1)
    at = np.asarray(fitted)
    fits = _lowess_fits(x, y, at, np.asarray(starts), ns)
    ys[at] = fits
    for k in range(len(at)):
        i = int(at[k])
        tie_end = int(np.searchsorted(x, x[i], side="right"))
        ys[i + 1 : tie_end] = fits[k]
        if k + 1 < len(at) and tie_end < at[k + 1]:  # points skipped within delta: linear interpolation
            last, nxt = tie_end - 1, int(at[k + 1])
            j = np.arange(last + 1, nxt)
            alpha = (x[j] - x[last]) / (x[nxt] - x[last])
            ys[j] = alpha * fits[k + 1] + (1.0 - alpha) * ys[last]
    return x, ys


def smoothed_calibration_curve(probs: Any, labels: Any) -> np.ndarray:
    """val.prob's smoothed calibration curve read at every probability: ``lowess(p, y, iter = 0)``
    interpolated at each ``p`` with tied ``p`` averaged (R's ``approx(..., ties = mean)``), in the
    input order. ``|p - curve|`` gives :func:`integrated_calibration_index` and E90 / Emax.

    Args:
        probs: binary ``[N]`` probabilities of the event (torch, NumPy or a list).
        labels: ``[N]`` 0 / 1 outcomes.

    Returns:
        The smoothed observed risk at each sample, ``[N]`` float64.

    Raises:
        ValueError: ``probs`` and ``labels`` of different lengths, probabilities outside [0, 1], labels not
            0 / 1, one outcome only (the fit is undefined), or a separated fit.
        TypeError: non-numeric inputs.

    Examples:
        >>> p = torch.linspace(0.05, 0.95, 200, dtype=torch.float64)
        >>> curve = smoothed_calibration_curve(p, (torch.arange(200) % 2).long())  # half positives everywhere
        >>> bool(abs(curve.mean() - 0.5) < 0.05)
        True
    """
    p, y = _binary_arrays(probs, labels)
    return _smoothed(p, y)


def _smoothed_knots(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct probabilities (sorted) and val.prob's lowess value at each, tied ``p`` averaged
    (R's ``approx(lowess(p, y, iter = 0), ties = mean)`` knots)."""
    xs, fit = lowess_smooth(p, y)
    uniq, start = np.unique(xs, return_index=True)
    return uniq, np.add.reduceat(fit, start) / np.diff(np.append(start, len(xs)))


def _smoothed(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    uniq, means = _smoothed_knots(p, y)
    return means[np.searchsorted(uniq, p)]


# ------------------------------------------------------------------------------ the metrics
def _spiegelhalter(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    num = float(np.sum((y - p) * (1.0 - 2.0 * p)))
    den = math.sqrt(float(np.sum((1.0 - 2.0 * p) ** 2 * p * (1.0 - p))))
    z = num / den if den > 0 else math.nan
    return z, (math.erfc(abs(z) / math.sqrt(2.0)) if math.isfinite(z) else math.nan)


def _binned_c_statistic(logits: np.ndarray, y: np.ndarray) -> float:
    """val.prob's "C (ROC)": concordance of the probabilities grouped into 5000 bins of width 0.0002
    (``plogis`` of the logit clipped to +-30, bin ``floor(5000 p) + 1``), ties counting one half."""
    prob = 1.0 / (1.0 + np.exp(-np.clip(logits, -30.0, 30.0)))
    bins = (5000.0 * prob + 1.0).astype(np.int64)
    neg = np.bincount(bins[y == 0], minlength=5002).astype(np.float64)
    pos = np.bincount(bins[y == 1], minlength=5002).astype(np.float64)
    pos_above = np.cumsum(pos[::-1])[::-1] - pos  # positives in strictly higher bins
    concordant = float(np.dot(neg, pos_above))
    tied = float(np.dot(neg, pos))
    discordant = float(neg.sum() * pos.sum()) - concordant - tied
    total = concordant + discordant + tied
    return (concordant + 0.5 * tied) / total if total > 0 else math.nan


def _deviance_indices(p: np.ndarray, logits: np.ndarray, y_fit: np.ndarray, y: np.ndarray, a: float, b: float,
                      c_stat: float) -> dict[str, float]:
    """val.prob's discrimination, unreliability and quality indices (Harrell, *Regression Modeling Strategies*,
    10.9). On the rows with a finite logit (``n`` of them): ``LR = L0 - L01``, the deviance of the intercept-only
    model minus that of the predictions taken as they are (intercept 0, slope 1); ``D = (LR - 1) / n``;
    Nagelkerke's ``R2 = (1 - exp(-LR / n)) / (1 - exp(-L0 / n))``; ``Dxy = 2 (C - 1/2)``. ``U = (U_chisq - 2) / n``
    with ``U_chisq = L01 - L_recal`` (the predictions' deviance over every row, R's ``na.rm`` sum, minus that of
    the recalibrated ``a + b logit``; chi-square on 2 df) and ``Q = D - U``."""
    n = len(y_fit)
    rate = float(y_fit.mean())
    l0 = -2.0 * n * (rate * math.log(rate) + (1.0 - rate) * math.log(1.0 - rate))
    lr = l0 + 2.0 * _binomial_loglik(logits, y_fit)
    with np.errstate(invalid="ignore"):
        l01_all = -2.0 * float(np.nansum(y * _logit(p) - np.logaddexp(0.0, _logit(p))))  # R's na.rm sum: inf kept
    u_chisq = l01_all + 2.0 * _binomial_loglik(a + b * logits, y_fit) if math.isfinite(a) else math.nan
    d = (lr - 1.0) / n
    u = (u_chisq - 2.0) / n
    from scipy.stats import chi2

    return {"dxy": 2.0 * (c_stat - 0.5), "r2": (1.0 - math.exp(-lr / n)) / (1.0 - math.exp(-l0 / n)), "d": d,
            "d_chisq": lr, "u": u, "u_chisq": u_chisq, "u_p": float(chi2.sf(u_chisq, 2)), "q": d - u}


def _clinical(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    if np.unique(p).size < 2:
        raise ValueError(
            "`probs` hold a single distinct value: the calibration slope and the smoothed curve are undefined"
        )
    logits, y_fit = _finite_logits(p, y)
    if y_fit.size < 2 or y_fit.min() == y_fit.max():
        a = b = citl = c_stat = math.nan
        indices = dict.fromkeys(("dxy", "r2", "d", "d_chisq", "u", "u_chisq", "u_p", "q"), math.nan)
        warnings.warn("fewer than two outcomes remain strictly inside (0, 1): the logistic fits are undefined",
                      RuntimeWarning, stacklevel=3)
    else:
        a, b = _recalibration_fit(logits, y_fit)
        citl = _citl_fit(logits, y_fit)
        c_stat = _binned_c_statistic(logits, y_fit)
        indices = _deviance_indices(p, logits, y_fit, y, a, b, c_stat)
    err = np.abs(p - _smoothed(p, y))
    z, pz = _spiegelhalter(p, y)
    return {
        "calibration_in_the_large": citl,
        "intercept": a,
        "slope": b,
        "e_avg": float(err.mean()),
        "e_90": float(np.quantile(err, 0.9)),
        "e_max": float(err.max()),
        "spiegelhalter_z": z,
        "spiegelhalter_p": pz,
        "brier": float(np.mean((p - y) ** 2)),
        "c_statistic": c_stat,
        **indices,
        "n": int(len(p)),
        "events": int(y.sum()),
    }


def _one_vs_rest(p: np.ndarray, y: np.ndarray, ordinal: bool) -> list[tuple[int, np.ndarray, np.ndarray]]:
    k = p.shape[1]
    if ordinal:
        tails = np.cumsum(p[:, ::-1], axis=1)[:, ::-1]  # tails[:, j] = P(grade >= j)
        return [(j, np.clip(tails[:, j + 1], 0.0, 1.0), (y > j).astype(np.float64)) for j in range(k - 1)]
    return [(j, p[:, j], (y == j).astype(np.float64)) for j in range(k)]


def clinical_calibration(probs: Any, labels: Any, *, ordinal: bool = False) -> dict[str, Any]:
    """The calibration hierarchy of the module docstring, as ``rms::val.prob`` computes it.

    Args:
        probs: ``[N]`` / ``[N, 1]`` positive-class probabilities, or ``[N, K]`` class probabilities.
            Torch (any device) or NumPy.
        labels: ``[N]`` integer labels (0 / 1 for binary input, ``[0, K)`` otherwise).
        ordinal: for ``[N, K]`` input, evaluate the cumulative probabilities ``P(grade > k)``
            against ``grade > k`` for each threshold ``k = 0 .. K-2`` instead of each class
            one-vs-rest (default False).

    Returns:
        Binary input: a dict with exactly the keys ``calibration_in_the_large``, ``intercept``,
        ``slope``, ``e_avg`` (ICI), ``e_90``, ``e_max``, ``spiegelhalter_z``, ``spiegelhalter_p``,
        ``brier``, ``c_statistic``, val.prob's ``dxy`` (Somers' D), ``r2`` (Nagelkerke), ``d``
        (discrimination index) with ``d_chisq``, ``u`` (unreliability index) with ``u_chisq`` and ``u_p``
        (its chi-square test on 2 df: are intercept 0 and slope 1 rejected?), ``q`` (quality index,
        ``d - u``), ``n`` and ``events``. ``[N, K]`` input: a dict from the class
        (or threshold) index to such a dict; a class absent from the labels gets NaN values and a warning.

    Raises:
        ValueError: probabilities outside [0, 1] or NaN, labels that are not 0 / 1 (binary) or
            not in ``[0, K)``, a length mismatch, one outcome only (binary), or a single distinct
            probability. Probabilities of exactly 0 or 1 are left out of the logistic fits with a
            ``RuntimeWarning``, as val.prob does.

    Examples:
        >>> r = clinical_calibration([0.1, 0.3, 0.5, 0.7, 0.9, 0.2, 0.6, 0.4], [0, 1, 0, 1, 1, 1, 0, 1])
        >>> {k: round(r[k], 4) for k in ("intercept", "slope", "e_avg", "e_max", "c_statistic")}
        {'intercept': 0.6302, 'slope': 0.447, 'e_avg': 0.2774, 'e_max': 0.7, 'c_statistic': 0.6}

        The same numbers as R's ``val.prob(p, y, pl = FALSE)``.
    """
    p, y = as_probs_labels(probs, labels)
    p = p.detach().cpu().to(torch.float64).numpy()
    y = y.detach().cpu().numpy()
    if p.ndim == 1:
        if ordinal:
            raise ValueError("`ordinal=True` needs [N, K] grade probabilities; got [N] binary probabilities")
        return _clinical(*_checked_binary(p, y))
    out: dict[int, dict[str, float]] = {}
    for j, pj, yj in _one_vs_rest(p, y, ordinal):
        if yj.min() == yj.max():
            what = f"threshold grade > {j}" if ordinal else f"class {j}"
            warnings.warn(f"{what}: the labels hold one outcome only; its values are NaN", RuntimeWarning,
                          stacklevel=2)
            out[j] = {k: math.nan for k in CLINICAL_KEYS} | {"n": len(yj), "events": int(yj.sum())}
            continue
        out[j] = _clinical(pj, yj)
    return out


# ------------------------------------------------------------------- the individual functions
def calibration_in_the_large(probs: Any, labels: Any) -> float:
    """Calibration-in-the-large: ``a`` in ``logit P(y) = a + logit(p)`` (slope fixed at 1), R's
    ``coef(glm(y ~ offset(qlogis(p)), family = binomial))``. Binary ``[N]`` probabilities.

    Args:
        probs: binary ``[N]`` probabilities of the event (torch, NumPy or a list).
        labels: ``[N]`` 0 / 1 outcomes.

    Returns:
        The intercept ``a`` (0 is ideal; > 0: predictions too low on average).

    Raises:
        ValueError: ``probs`` and ``labels`` of different lengths, probabilities outside [0, 1], labels not
            0 / 1, one outcome only (the fit is undefined), or a separated fit.
        TypeError: non-numeric inputs.

    Examples:
        >>> p, y = [0.1, 0.3, 0.5, 0.7, 0.9, 0.2, 0.6, 0.4], [0, 1, 0, 1, 1, 1, 0, 1]
        >>> round(calibration_in_the_large(p, y), 4)  # R's glm: 0.875
        0.875
    """
    p, y = _binary_arrays(probs, labels)
    return _citl_fit(*_finite_logits(p, y))


def calibration_slope(probs: Any, labels: Any) -> float:
    """Calibration slope: ``b`` in ``logit P(y) = a + b logit(p)`` (val.prob's "Slope"); 1 is ideal,
    below 1 means over-confident predictions. Binary ``[N]`` probabilities.

    Args:
        probs: binary ``[N]`` probabilities of the event (torch, NumPy or a list).
        labels: ``[N]`` 0 / 1 outcomes.

    Returns:
        The slope ``b``, a float.

    Raises:
        ValueError: ``probs`` and ``labels`` of different lengths, probabilities outside [0, 1], labels not
            0 / 1, one outcome only (the fit is undefined), or a separated fit.
        TypeError: non-numeric inputs.

    Examples:
        >>> p, y = [0.1, 0.3, 0.5, 0.7, 0.9, 0.2, 0.6, 0.4], [0, 1, 0, 1, 1, 1, 0, 1]
        >>> round(calibration_slope(p, y), 4)  # R's val.prob: 0.4470
        0.447
    """
    p, y = _binary_arrays(probs, labels)
    return _recalibration_fit(*_finite_logits(p, y))[1]


def calibration_intercept(probs: Any, labels: Any) -> float:
    """Calibration intercept: ``a`` in the joint fit ``logit P(y) = a + b logit(p)`` (val.prob's
    "Intercept"). Binary ``[N]`` probabilities.

    Args:
        probs: binary ``[N]`` probabilities of the event (torch, NumPy or a list).
        labels: ``[N]`` 0 / 1 outcomes.

    Returns:
        The intercept ``a`` of the joint fit, a float.

    Raises:
        ValueError: ``probs`` and ``labels`` of different lengths, probabilities outside [0, 1], labels not
            0 / 1, one outcome only (the fit is undefined), or a separated fit.
        TypeError: non-numeric inputs.

    Examples:
        >>> p, y = [0.1, 0.3, 0.5, 0.7, 0.9, 0.2, 0.6, 0.4], [0, 1, 0, 1, 1, 1, 0, 1]
        >>> round(calibration_intercept(p, y), 4)  # R's val.prob: 0.6302
        0.6302
    """
    p, y = _binary_arrays(probs, labels)
    return _recalibration_fit(*_finite_logits(p, y))[0]


def integrated_calibration_index(probs: Any, labels: Any) -> float:
    """The integrated calibration index (ICI, val.prob's "Eavg", Austin & Steyerberg 2019): the mean
    of ``|p - s(p)|`` over the samples, ``s`` the smoothed calibration curve
    (:func:`smoothed_calibration_curve`). Binary ``[N]`` probabilities.

    Args:
        probs: binary ``[N]`` probabilities of the event (torch, NumPy or a list).
        labels: ``[N]`` 0 / 1 outcomes.

    Returns:
        The ICI, a float in [0, 1].

    Raises:
        ValueError: ``probs`` and ``labels`` of different lengths, probabilities outside [0, 1], labels not
            0 / 1, one outcome only (the fit is undefined), or a separated fit.
        TypeError: non-numeric inputs.

    Examples:
        >>> p, y = [0.1, 0.3, 0.5, 0.7, 0.9, 0.2, 0.6, 0.4], [0, 1, 0, 1, 1, 1, 0, 1]
        >>> round(integrated_calibration_index(p, y), 4)  # R's val.prob Eavg: 0.2774
        0.2774
    """
    p, y = _binary_arrays(probs, labels)
    return float(np.mean(np.abs(p - _smoothed(p, y))))


def spiegelhalter_test(probs: Any, labels: Any) -> tuple[float, float]:
    """Spiegelhalter's (1986) z test of calibration: ``(z, two-sided p-value)`` with
    ``z = sum (y - p)(1 - 2p) / sqrt(sum (1 - 2p)^2 p (1 - p))`` (val.prob's "S:z", "S:p").

    Args:
        probs: binary ``[N]`` probabilities of the event (torch, NumPy or a list).
        labels: ``[N]`` 0 / 1 outcomes.

    Returns:
        ``(z, p_value)``, floats.

    Raises:
        ValueError: ``probs`` and ``labels`` of different lengths, probabilities outside [0, 1], labels not
            0 / 1, one outcome only (the fit is undefined), or a separated fit.
        TypeError: non-numeric inputs.

    Examples:
        >>> z, pval = spiegelhalter_test([0.1, 0.3, 0.5, 0.7, 0.9, 0.2, 0.6, 0.4], [0, 1, 0, 1, 1, 1, 0, 1])
        >>> round(z, 4), round(pval, 4)  # R's val.prob S:z, S:p
        (1.4142, 0.1573)
    """
    p, y = _binary_arrays(probs, labels)
    return _spiegelhalter(p, y)


def _key(name: str):
    def metric(probs: Any, labels: Any) -> float:
        return float(clinical_calibration(probs, labels)[name])

    metric.__name__ = name
    metric.__doc__ = f"``clinical_calibration(probs, labels)['{name}']`` (binary input)."
    return metric


#: the clinical metrics :func:`medloss.calibration.bootstrap_ci` accepts by name
CLINICAL_METRICS = {
    "calibration_in_the_large": calibration_in_the_large,
    "calibration_slope": calibration_slope,
    "calibration_intercept": calibration_intercept,
    "integrated_calibration_index": integrated_calibration_index,
    "e_90": _key("e_90"),
    "e_max": _key("e_max"),
    "spiegelhalter_z": _key("spiegelhalter_z"),
    "c_statistic": _key("c_statistic"),
}


# --------------------------------------------------------------- Hosmer-Lemeshow, prevalence
def hosmer_lemeshow_test(probs: Any, labels: Any, *, n_groups: int = 10) -> dict[str, float]:
    """The Hosmer-Lemeshow goodness-of-fit test over groups of predicted risk.

    Groups are cut at the ``n_groups`` quantiles of ``p`` (R's type 7; intervals ``(lo, hi]``, the
    first closed, as ``ResourceSelection::hoslem.test``); the statistic sums ``(O - E)^2 / E`` over
    events and non-events of every group, with ``G - 2`` degrees of freedom for ``G`` groups (tied
    quantiles merge groups). A weak test: its verdict depends on the grouping and it has little power
    at small n and flags trivial miscalibration at large n; report the calibration slope and curve
    instead of relying on it (Van Calster et al. 2019).

    Args:
        probs: binary ``[N]`` probabilities of the event (torch, NumPy or a list).
        labels: ``[N]`` 0 / 1 outcomes.
        n_groups: the number of risk groups (default 10).

    Returns:
        ``{"statistic", "df", "p_value", "n_groups"}``. As ``hoslem.test``, the statistic is NaN (with a warning
        naming the groups) when a group expects 0 events or 0 non-events (probabilities of exactly 0 or 1), and
        infinite (p-value 0) when events occur where none are expected.

    Raises:
        ValueError: ``probs`` and ``labels`` of different lengths, probabilities outside [0, 1], labels not
            0 / 1, one outcome only (the fit is undefined), or a separated fit.
        TypeError: non-numeric inputs.

    Examples:
        >>> p = [0.1, 0.15, 0.2, 0.3, 0.35, 0.5, 0.55, 0.6, 0.8, 0.9]
        >>> y = [0, 0, 1, 0, 0, 1, 0, 1, 1, 1]
        >>> r = hosmer_lemeshow_test(p, y, n_groups=5)
        >>> round(r["statistic"], 4), r["df"], round(r["p_value"], 4)  # R (hoslem.test's code): 1.3974, 3, 0.7061
        (1.3974, 3, 0.7061)
    """
    from scipy.stats import chi2

    from .._validation import check_int

    n_groups = check_int(n_groups, "n_groups", low=3)
    p, y = _binary_arrays(probs, labels)
    edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, n_groups + 1)))
    group = np.clip(np.searchsorted(edges, p, side="left") - 1, 0, len(edges) - 2)  # (lo, hi], first closed
    g = len(edges) - 1
    events = np.bincount(group, weights=y, minlength=g)
    expected = np.bincount(group, weights=p, minlength=g)
    count = np.bincount(group, minlength=g).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = (events - expected) ** 2 / expected + ((count - events) - (count - expected)) ** 2 / (count - expected)
    for bad, what in ((np.isnan(terms), "expect 0 events or 0 non-events and observe none, so the statistic is "
                                        "undefined (NaN"),
                      (np.isinf(terms), "observe events (or non-events) where their probabilities of 0 or 1 expect "
                                        "none, so the statistic is infinite (p-value 0")):
        if bad.any():  # as hoslem.test: 0 / 0 is NaN, x / 0 infinite
            said = ", ".join(f"{k + 1} (p in [{edges[k]:.3g}, {edges[k + 1]:.3g}])" for k in np.flatnonzero(bad))
            warnings.warn(f"hosmer_lemeshow_test: risk group(s) {said} {what}, as R's hoslem.test); use fewer "
                          "groups, or report the calibration slope and curve instead", RuntimeWarning, stacklevel=2)
    stat = float(np.sum(terms))  # NaN for an undefined cell, inf where events occur against 0 expected (as R)
    df = g - 2
    return {"statistic": stat, "df": df, "p_value": float(chi2.sf(stat, df)) if df > 0 else math.nan,
            "n_groups": g}


def _prevalence(value: Any, name: str) -> float:
    return check_number(value, name, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)


def adjust_prevalence(probs: Any, source_prevalence: float, target_prevalence: float) -> Any:
    """Probabilities of a model developed at one prevalence, moved to another (Chen et al. 2018):
    ``sigmoid(logit p + logit target - logit source)``, computed in log space (exact for p near 0 or 1).

    Use it when the test set was enriched (e.g. 50 % cancers where the clinic sees 2 %).

    Args:
        probs: probabilities (torch, NumPy or a list).
        source_prevalence: the prevalence the model was developed at, in (0, 1).
        target_prevalence: the prevalence to move to, in (0, 1).

    Returns:
        The moved probabilities, of the input's type (torch tensors keep device and dtype).

    Raises:
        ValueError: probabilities outside [0, 1] or NaN, a prevalence outside (0, 1).

    Examples:
        >>> [round(v, 4) for v in adjust_prevalence([0.5, 0.9], 0.5, 0.02)]
        [0.02, 0.1552]
    """
    src = _prevalence(source_prevalence, "source_prevalence")
    tgt = _prevalence(target_prevalence, "target_prevalence")
    shift = math.log(tgt / (1.0 - tgt)) - math.log(src / (1.0 - src))
    if isinstance(probs, torch.Tensor):
        from .._validation import check_probabilities

        check_probabilities(probs, "probs")
        return torch.sigmoid(torch.logit(probs) + shift)
    p = np.asarray(probs, dtype=np.float64)
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("`probs` must be probabilities in [0, 1] without NaN")
    with np.errstate(divide="ignore"):
        z = np.log(p) - np.log1p(-p) + shift
    out = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out.tolist() if isinstance(probs, list) else out


def derivation_prevalence(probs: Any, labels: Any) -> float:
    """The prevalence a model's probabilities behave as if developed at, given labelled data at a
    known prevalence: the fixed-slope logit shift that fits the labels best is the calibration-in-
    the-large ``a``, and the implied source prevalence ``q`` satisfies ``logit q = logit pi - a``
    with ``pi`` the event rate of ``labels``. Reverse with :func:`adjust_prevalence`.

    Args:
        probs: binary ``[N]`` probabilities of the event (torch, NumPy or a list).
        labels: ``[N]`` 0 / 1 outcomes.

    Returns:
        The implied development prevalence, a float in (0, 1).

    Raises:
        ValueError: ``probs`` and ``labels`` of different lengths, probabilities outside [0, 1], labels not
            0 / 1, one outcome only (the fit is undefined), or a separated fit.
        TypeError: non-numeric inputs.

    Examples:
        >>> p = [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]
        >>> round(derivation_prevalence(p, [0, 0, 0, 0, 1, 0, 1, 1]), 4)  # R: 0.5532 (see the tests)
        0.5532
    """
    p, y = _binary_arrays(probs, labels)
    a = _citl_fit(*_finite_logits(p, y))
    rate = float(y.mean())
    z = math.log(rate / (1.0 - rate)) - a
    return 1.0 / (1.0 + math.exp(-z))
