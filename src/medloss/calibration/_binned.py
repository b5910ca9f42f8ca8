"""The bootstrap of the clinical calibration hierarchy on a fine grid of the predicted risk.

Resampling rows with replacement and refitting val.prob's lowess and logistic fits on every resample
costs O(rows) per fit: 1,000 resamples of 100,000 rows take hours. Here the rows are first grouped
into ``≈ 3 x grid`` bins of the predicted risk (the union of equal-count bins, equal-width bins in
``p`` and equal-width bins in ``logit p``, so that no region of the risk is coarse), and each bin keeps
its number of rows, of events and the means of the functions of ``p`` the hierarchy needs. A resample
of the rows is then, exactly in distribution, a multinomial draw of the rows per bin and a binomial
draw of the events among them; every statistic is computed on the bins, in one vectorised pass over
all resamples:

- intercept / slope and calibration-in-the-large: the logistic fits on the bins (each bin's rows at
  its mean logit), by Newton-Raphson;
- ICI, E90, Emax: R's lowess (span 2/3, no robustness iterations) on the bins' rows, fitted at
  ``grid`` points of the risk and interpolated between them (R's ``delta``), read at each bin's mean risk;
- Spiegelhalter's z, Brier: sums of the bins' means; C statistic: pairs within a bin count as ties.

The only approximation is that the rows of a bin share its mean risk in the fits: with bins ~1/600 of
the risk's range (finer where the rows are dense) the intervals move by less than the bootstrap's own
Monte-Carlo noise (``benchmarks/bench_cli.py`` and ``tests/test_binned_bootstrap.py`` measure it). The
point estimates are always computed exactly, on the rows.
"""

from __future__ import annotations

import math

import numpy as np

#: grid points per binning (three binnings are merged, so a curve has up to ~3x as many bins)
GRID = 200
#: resamples computed at once
CHUNK = 250


def _bin_edges(p: np.ndarray, grid: int) -> np.ndarray:
    finite = p[(p > 0.0) & (p < 1.0)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.5, 0.5)
    quantiles = np.quantile(p, np.linspace(0.0, 1.0, grid + 1))
    widths = np.linspace(lo, hi, grid + 1)
    logits = 1.0 / (1.0 + np.exp(-np.linspace(math.log(lo / (1 - lo)), math.log(hi / (1 - hi)), grid + 1)))
    # 0 and 1 (no finite logit) get bins of their own
    return np.unique(np.concatenate([quantiles, widths, logits, [lo, np.nextafter(hi, 2.0)]]))


class RiskBins:
    """The rows of one binary curve grouped by predicted risk: counts, events and per-bin means."""

    def __init__(self, p: np.ndarray, y: np.ndarray, grid: int = GRID) -> None:
        edges = _bin_edges(p, grid)
        index = np.searchsorted(edges, p, side="right")
        used, index = np.unique(index, return_inverse=True)
        self.index = index  # the bin of each row (the jackknife leaves groups of rows out)
        self.n = len(p)
        self.counts = np.bincount(index).astype(np.float64)
        self.events = np.bincount(index, weights=y).astype(np.float64)

        def mean(values: np.ndarray) -> np.ndarray:
            return np.bincount(index, weights=values) / self.counts

        self.p = mean(p)
        self.p_sq = mean(p * p)
        self.spiegel_num = mean(p * (1.0 - 2.0 * p))  # sum (y - p)(1 - 2p) = sum y (1 - 2p) - sum p (1 - 2p)
        self.spiegel_den = mean((1.0 - 2.0 * p) ** 2 * p * (1.0 - p))
        with np.errstate(divide="ignore"):
            logit = np.log(p / (1.0 - p))
        self.finite = np.bincount(index, weights=~np.isfinite(logit)) == 0  # bins of exact 0 / 1 have none
        finite_logit = np.where(np.isfinite(logit), logit, 0.0)
        self.logit = np.where(self.finite, mean(finite_logit), 0.0)
        # the deviance of the predictions taken as they are, per row of a bin: sum y logit - log(1 + e^logit)
        self.softplus = np.where(self.finite, mean(np.logaddexp(0.0, finite_logit)), 0.0)
        event_rows = np.bincount(index, weights=y)
        self.event_logit = np.divide(np.bincount(index, weights=y * finite_logit), event_rows,
                                     out=self.logit.copy(), where=event_rows > 0)
        self.zero = self.p == 0.0  # bins of p = 0: an event there makes val.prob's U infinite
        self.grid = np.linspace(float(p.min()), float(p.max()), 101)  # lowess fit points: R's delta = 1 %
        self.tricube = _lowess_weights(self.p, self.counts, self.grid)

    def resample(self, rng: np.random.Generator, n_boot: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and events per bin of ``n_boot`` resamples of the rows: ``[n_boot, bins]`` each."""
        m = rng.multinomial(self.n, self.counts / self.n, size=n_boot).astype(np.float64)
        rate = np.divide(self.events, self.counts, out=np.zeros_like(self.events), where=self.counts > 0)
        e = rng.binomial(m.astype(np.int64), rate).astype(np.float64)
        return m, e


def _logistic(x: np.ndarray, m: np.ndarray, e: np.ndarray, slope: bool, maxit: int = 60) -> np.ndarray:
    """Weighted logistic fits, vectorised over resamples (rows of ``m`` / ``e``): ``logit P = a + b x``
    (``slope``) or ``logit P = a + x`` (offset). Returns ``[R, 2]`` or ``[R, 1]``; NaN where the fit
    does not converge (separation: the estimate does not exist)."""
    r = m.shape[0]
    beta = np.tile([0.0, 1.0] if slope else [0.0], (r, 1))
    done = np.zeros(r, dtype=bool)
    for _ in range(maxit):
        eta = beta[:, :1] + (beta[:, 1:2] * x if slope else x)
        mu = 0.5 * (1.0 + np.tanh(0.5 * eta))
        v = m * mu * (1.0 - mu)
        resid = e - m * mu
        g0, h00 = resid.sum(1), v.sum(1)
        if slope:
            g1, h01, h11 = (resid * x).sum(1), (v * x).sum(1), (v * x * x).sum(1)
            det = h00 * h11 - h01 * h01
            with np.errstate(invalid="ignore", divide="ignore"):
                step = np.stack([(h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det], 1)
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                step = (g0 / h00)[:, None]
        step = np.where(np.isfinite(step), step, np.nan)
        big = np.abs(step).max(1, keepdims=True)
        step = step * np.minimum(1.0, 5.0 / np.where(big > 0, big, 1.0))  # damped: no overshoot far out
        beta = np.where(done[:, None], beta, beta + step)
        done |= np.abs(step).max(1) < 1e-10 * np.maximum(1.0, np.abs(beta).max(1))
        if done.all():
            break
    beta[~done] = np.nan
    return beta


def _lowess_weights(x: np.ndarray, counts: np.ndarray, at: np.ndarray, frac: float = 2.0 / 3.0) -> np.ndarray:
    """R's lowess tricube weights ``[G, B]`` of the bins at ``x`` for the fit points ``at``: the
    half-width ``h`` of each fit is the distance to its ``floor(frac n)``-th nearest row. ``h`` is set
    on the original rows and kept for every resample (it moves by O(1 / sqrt(n)) between resamples, a
    second-order effect on the fit): the lowess of a resample is then five matrix products."""
    n = counts.sum()
    ns = max(2.0, min(n, math.floor(frac * n + 1e-7)))
    d = np.abs(at[:, None] - x[None, :])
    order = np.argsort(d, axis=1, kind="stable")
    cum = np.cumsum(counts[order], axis=1)
    k = (cum < ns).sum(1).clip(max=d.shape[1] - 1)
    h = np.take_along_axis(d, order, 1)[np.arange(len(at)), k][:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(d <= 0.001 * h, 1.0, (1.0 - (d / h) ** 3) ** 3)
    return np.where(d <= 0.999 * h, t, 0.0)


def _lowess_on_bins(x: np.ndarray, tricube: np.ndarray, m: np.ndarray, e: np.ndarray, at: np.ndarray) -> np.ndarray:
    """R's ``lowess(iter = 0)`` of rows sitting at the bin positions ``x`` (``m`` rows, ``e`` events per
    bin, ``[R, B]``) with the weights of :func:`_lowess_weights`, fitted at ``at`` ``[G]``: ``[R, G]``."""
    wt = tricube.T  # [B, G]
    total = m @ wt
    sx, sxx = (m * x) @ wt, (m * x * x) @ wt
    se, sxe = e @ wt, (e * x) @ wt
    with np.errstate(invalid="ignore", divide="ignore"):
        center = sx / total
        c = sxx / total - center * center  # the weighted variance of x in the window
        plain = se / total
        tilt = (at[None, :] - center) / c * (sxe - center * se) / total
    linear = np.sqrt(np.clip(c, 0.0, None)) > 0.001 * (x[-1] - x[0])
    return np.where(linear, plain + np.where(linear, tilt, 0.0), plain)


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> np.ndarray:
    """Per row, R's type-7 quantile of the rows behind ``values`` (each value repeated ``weights`` times)."""
    order = np.argsort(values, axis=1)
    v = np.take_along_axis(values, order, 1)
    cw = np.cumsum(np.take_along_axis(weights, order, 1), 1)
    n = cw[:, -1]
    pos = q * (n - 1.0)  # 0-based position of the quantile among the sorted rows
    lo = np.floor(pos)
    frac = pos - lo
    i_lo = (cw <= lo[:, None]).sum(1).clip(max=v.shape[1] - 1)
    i_hi = (cw <= (lo + 1.0)[:, None]).sum(1).clip(max=v.shape[1] - 1)
    rows = np.arange(v.shape[0])
    return v[rows, i_lo] + frac * (v[rows, i_hi] - v[rows, i_lo])


def bootstrap_values(bins: RiskBins, m: np.ndarray, e: np.ndarray) -> dict[str, np.ndarray]:
    """Every number of the hierarchy for each resample (rows of ``m`` / ``e``)."""
    out: dict[str, np.ndarray] = {}
    f = bins.finite
    fit = _logistic(bins.logit[f], m[:, f], e[:, f], slope=True)
    out["intercept"], out["slope"] = fit[:, 0], fit[:, 1]
    out["calibration_in_the_large"] = _logistic(bins.logit[f], m[:, f], e[:, f], slope=False)[:, 0]
    n = m.sum(1)
    fitted = _lowess_on_bins(bins.p, bins.tricube, m, e, bins.grid)
    curve = np.stack([np.interp(bins.p, bins.grid, row) for row in fitted])
    err = np.abs(bins.p[None, :] - curve)
    out["e_avg"] = (err * m).sum(1) / n
    out["e_90"] = _weighted_quantile(err, m, 0.9)
    out["e_max"] = np.where(m > 0, err, -np.inf).max(1)
    num = (e * (1.0 - 2.0 * bins.p)).sum(1) - (m * bins.spiegel_num).sum(1)
    den = np.sqrt((m * bins.spiegel_den).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(den > 0, num / den, np.nan)
    out["spiegelhalter_z"] = z
    out["spiegelhalter_p"] = np.array([math.erfc(abs(v) / math.sqrt(2.0)) if math.isfinite(v) else math.nan
                                       for v in z])
    out["brier"] = ((m * bins.p_sq).sum(1) - 2.0 * (e * bins.p).sum(1) + e.sum(1)) / n
    pos, neg = e[:, f], m[:, f] - e[:, f]
    above = np.cumsum(pos[:, ::-1], 1)[:, ::-1] - pos  # positives in strictly higher-risk bins
    concordant = (neg * above).sum(1)
    tied = (neg * pos).sum(1)
    pairs = neg.sum(1) * pos.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["c_statistic"] = np.where(pairs > 0, (concordant + 0.5 * tied) / pairs, np.nan)
    out.update(_deviance_indices(bins, m, e, fit, out["c_statistic"]))
    one_outcome = (e.sum(1) == 0) | (e.sum(1) == n)
    for key in out:  # a resample with one outcome only: undefined, as the exact bootstrap skips it
        out[key] = np.where(one_outcome, np.nan, out[key])
    return out


def _deviance_indices(bins: RiskBins, m: np.ndarray, e: np.ndarray, fit: np.ndarray, c: np.ndarray
                      ) -> dict[str, np.ndarray]:
    """val.prob's Dxy, R2, D, U and Q of each resample (:func:`medloss.calibration.clinical._deviance_indices`)."""
    from scipy.stats import chi2

    f = bins.finite
    mf, ef = m[:, f], e[:, f]
    n, events = mf.sum(1), ef.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = events / n
        l0 = -2.0 * (events * np.log(rate) + (n - events) * np.log1p(-rate))
        l01 = -2.0 * ((ef * bins.event_logit[f]).sum(1) - (mf * bins.softplus[f]).sum(1))
        eta = fit[:, :1] + fit[:, 1:2] * bins.logit[f]
        l_recal = -2.0 * ((ef * eta).sum(1) - (mf * np.logaddexp(0.0, eta)).sum(1))
        u_chisq = l01 + np.where((e[:, bins.zero] > 0).any(1), np.inf, 0.0) - l_recal
        lr = l0 - l01
        d, u = (lr - 1.0) / n, (u_chisq - 2.0) / n
        r2 = (1.0 - np.exp(-lr / n)) / (1.0 - np.exp(-l0 / n))
    return {"dxy": 2.0 * (c - 0.5), "r2": r2, "d": d, "d_chisq": lr, "u": u, "u_chisq": u_chisq,
            "u_p": chi2.sf(u_chisq, 2), "q": d - u}


def binned_bootstrap(p: np.ndarray, y: np.ndarray, n_boot: int, rng: np.random.Generator,
                     keys: list[str], on_chunk=None) -> dict[str, np.ndarray]:
    """``n_boot`` bootstrap values of each key of the hierarchy for the binary curve ``(p, y)``."""
    bins = RiskBins(p, y)
    out = {k: np.full(n_boot, np.nan) for k in keys}
    for start in range(0, n_boot, CHUNK):
        size = min(CHUNK, n_boot - start)
        m, e = bins.resample(rng, size)
        values = bootstrap_values(bins, m, e)
        for k in keys:
            out[k][start:start + size] = values[k]
        if on_chunk is not None:
            on_chunk(size)
    return out


def binned_jackknife(p: np.ndarray, y: np.ndarray, gid: np.ndarray, n_groups: int,
                     keys: list[str]) -> dict[str, np.ndarray]:
    """Each key of the hierarchy with each group of rows (``gid``: the group of each row) left out, on the
    same bins as :func:`binned_bootstrap`: ``{key: [n_groups]}``."""
    bins = RiskBins(p, y)
    size = bins.counts.size
    index = gid * size + bins.index
    counts = np.bincount(index, minlength=n_groups * size).reshape(n_groups, size)
    events = np.bincount(index, weights=y, minlength=n_groups * size).reshape(n_groups, size)
    values = bootstrap_values(bins, bins.counts - counts, bins.events - events)
    return {k: values[k] for k in keys}


def binned_smoothed_curves(p: np.ndarray, y: np.ndarray, at: np.ndarray, n_boot: int,
                           rng: np.random.Generator) -> np.ndarray:
    """The smoothed calibration curve (val.prob's lowess) of ``n_boot`` resamples read at ``at``,
    ``[n_boot, len(at)]``: the band of :func:`medloss.calibration.plot_clinical_calibration` for many rows."""
    bins = RiskBins(p, y)
    tricube = _lowess_weights(bins.p, bins.counts, at)
    out = np.empty((n_boot, len(at)))
    for start in range(0, n_boot, CHUNK):
        size = min(CHUNK, n_boot - start)
        m, e = bins.resample(rng, size)
        out[start:start + size] = _lowess_on_bins(bins.p, tricube, m, e, at)
    return out
