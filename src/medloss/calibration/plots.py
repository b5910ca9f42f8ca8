"""Reliability diagrams (matplotlib)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._optional import progress_bar, require
from .._validation import check_choice, check_int
from .metrics import BINNINGS, ReliabilityCurve, reliability_curve


def _as_curves(data: Any, n_bins: int, binning: str) -> dict[str, ReliabilityCurve]:
    if isinstance(data, ReliabilityCurve):
        return {"model": data}
    if isinstance(data, tuple) and len(data) == 2:
        return {"model": reliability_curve(*data, n_bins=n_bins, binning=binning)}
    if isinstance(data, Mapping) and data:
        out = {}
        for name, value in data.items():
            if isinstance(value, ReliabilityCurve):
                out[str(name)] = value
            elif isinstance(value, tuple) and len(value) == 2:
                out[str(name)] = reliability_curve(*value, n_bins=n_bins, binning=binning)
            else:
                raise TypeError(f"curve {name!r} must be (probs, labels) or a ReliabilityCurve")
        return out
    raise TypeError(
        "`curves` must be (probs, labels), a ReliabilityCurve, or a mapping name -> either of them "
        "(e.g. {'uncalibrated': (p, y), 'temperature scaled': (p_ts, y)})"
    )


def plot_reliability_diagram(
    curves: Any,
    *,
    n_bins: int = 15,
    binning: str = "uniform",
    title: str | None = None,
    show_gap: bool = True,
    min_count: int = 10,
    figsize: tuple[float, float] = (5.0, 6.0),
):
    """Reliability diagram: per-bin accuracy against mean confidence, above a confidence histogram.

    Args:
        curves: ``(probs, labels)``, a :class:`ReliabilityCurve`, or a mapping name -> either,
            to overlay several models or before / after calibration.
        n_bins, binning: used when curves are computed here (default 15 uniform bins).
        title: figure title.
        show_gap: shade the gap between each bin's accuracy and the diagonal (first curve).
        min_count: bins with fewer samples are drawn with open markers: their accuracy is a
            fraction of a handful of cases (default 10).
        figsize: inches (default 5 x 6, a journal column).

    Each curve has its own line style and marker, so a curve identical to another stays visible.
    The legend (below the histogram, off the data) gives each curve's ECE and its MCE with the bin
    and sample count where the maximum occurs; the histogram is labelled with the sample count of
    each bin of the first curve. Empty bins are skipped.

    Returns:
        The matplotlib ``Figure`` (save it with :func:`save_figure`, or ``fig.savefig("reliability.png",
        dpi=200, bbox_inches="tight")``).

    Raises:
        ValueError: ``n_bins`` < 1, ``min_count`` < 0, an unknown ``binning``; inputs as
            :func:`reliability_curve`.
        ImportError: matplotlib not installed (``pip install medloss[plots]``).

    Examples:
        >>> import torch
        >>> probs, labels = torch.softmax(torch.randn(500, 3), 1), torch.randint(0, 3, (500,))
        >>> fig = plot_reliability_diagram({"model": (probs, labels)})
        >>> [ax.get_ylabel() for ax in fig.axes]
        ['accuracy', 'fraction of samples']
    """
    check_int(n_bins, "n_bins", low=1)
    check_int(min_count, "min_count", low=0)
    check_choice(binning, "binning", BINNINGS)
    data = _as_curves(curves, n_bins, binning)
    rcParams = require("matplotlib", "plot_reliability_diagram").rcParams

    fig, ax, hx = _two_panels(figsize)
    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    styles = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D")]
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1, label="perfect calibration")
    first = next(iter(data.values()))
    thin_any = False
    for i, (name, c) in enumerate(data.items()):
        color = colors[i % len(colors)]
        line, marker = styles[i % len(styles)]
        keep = c.counts > 0
        x, acc = c.mean_confidence[keep], c.accuracy[keep]
        if i == 0 and show_gap:
            lo, hi = c.edges[:-1][keep], c.edges[1:][keep]
            centers = (lo + hi) / 2
            ax.bar(
                centers, acc - x, bottom=x, width=(hi - lo) * 0.9, color="tab:red", alpha=0.25,
                edgecolor="none", label="gap to diagonal",
            )
        ax.plot(x, acc, ls=line, color=color, lw=1.5, label=f"{name}: {_ece_mce_label(c)}")
        thin = c.counts[keep] < min_count
        thin_any |= bool(thin.any())
        ax.plot(x[~thin], acc[~thin], ls="none", marker=marker, ms=4.5, color=color)
        ax.plot(x[thin], acc[thin], ls="none", marker=marker, ms=4.5, mfc="white", mec=color)
        hx.hist(
            c.edges[:-1], bins=c.edges, weights=c.counts / max(c.n_samples, 1), histtype="step",
            color=color, lw=1.5, ls=line,
        )
        if i == 0:  # the sample count of each bin, above its bar
            for lo_edge, hi_edge, count in zip(c.edges[:-1], c.edges[1:], c.counts, strict=True):
                if count:
                    hx.text((lo_edge + hi_edge) / 2, count / max(c.n_samples, 1), str(int(count)), ha="center",
                            va="bottom", fontsize=6, color="0.3")
    if thin_any:
        ax.plot([], [], ls="none", marker="o", mfc="white", mec="0.4", label=f"open markers: bins with < {min_count} "
                "samples (their accuracy is unreliable)")
    xlabel = "predicted probability of the positive class" if first.binary else "confidence (top-label probability)"
    ylabel = "observed fraction of positives" if first.binary else "accuracy"
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel=ylabel)
    ax.set_aspect("auto")
    ax.grid(alpha=0.3)
    hx.set(xlabel=xlabel, ylabel="fraction of samples")
    hx.margins(y=0.25)
    hx.grid(alpha=0.3)
    return _finish(fig, ax, hx, title)


def _two_panels(figsize: tuple[float, float]):
    """A bare Figure (no pyplot: no global state, no backend or display needed) with a curve panel
    above a distribution panel sharing the x axis."""
    Figure = require("matplotlib.figure", "plotting").Figure

    fig = Figure(figsize=figsize)
    ax, hx = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.08})
    return fig, ax, hx


#: legend and title lines are wrapped to this many characters: the figure keeps its width (a long label would widen
#: the saved image and shrink the plot and its text beside other figures)
WRAP = 58


def _wrap(text: str, width: int = WRAP) -> str:
    import textwrap

    return "\n".join(textwrap.fill(line, width, subsequent_indent="  ") for line in str(text).split("\n"))


def _finish(fig, ax, hx, title: str | None):
    """The curve panel's legend below the distribution panel (off the data), the title, aligned labels."""
    handles, labels = ax.get_legend_handles_labels()
    hx.legend(handles, [_wrap(label) for label in labels], loc="upper left", bbox_to_anchor=(0.0, -0.45), fontsize=9,
              frameon=False)
    if title:
        ax.set_title(_wrap(title, 48))
    fig.align_ylabels([ax, hx])
    return fig


def _ece_mce_label(c) -> str:
    """``ECE 0.031, MCE 0.210 in (0.93, 1.00], n = 2``: the MCE with the bin it comes from."""
    keep = c.counts > 0
    if not keep.any():
        return "no samples"
    gaps = np.where(keep, np.abs(np.nan_to_num(c.accuracy) - np.nan_to_num(c.mean_confidence)), -1.0)
    b = int(np.argmax(gaps))
    return f"ECE {c.ece:.3f}, MCE {c.mce:.3f} in ({c.edges[b]:.2f}, {c.edges[b + 1]:.2f}], n = {int(c.counts[b])}"


def save_figure(fig, path: str, dpi: int = 200) -> None:
    """Save a figure atomically: to a temporary file in the same folder, then renamed.

    Args:
        fig: a matplotlib ``Figure``.
        path: the file to write (its suffix chooses the format: ``.png``, ``.pdf``, ``.svg``...).
        dpi: resolution of raster formats (default 200).

    Returns:
        None; ``path`` holds the whole figure or, on an error, is left as it was.

    Raises:
        OSError: the folder cannot be written (nothing is left behind).

    Examples:
        >>> import os, tempfile
        >>> import torch
        >>> fig = plot_reliability_diagram((torch.rand(100), torch.randint(0, 2, (100,))))
        >>> path = os.path.join(tempfile.mkdtemp(), "reliability.png")
        >>> save_figure(fig, path)
        >>> os.path.getsize(path) > 0
        True
    """
    import os
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1] or ".png"
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        mask = os.umask(0o022)  # mkstemp makes the file 0600: give it the permissions open() would
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _smoothed_on_grid(p: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """val.prob's smoothed curve (ties averaged) read on ``grid`` by linear interpolation; NaN
    outside the range of ``p``."""
    from .clinical import _smoothed_knots

    uniq, means = _smoothed_knots(p, y)
    out = np.interp(grid, uniq, means)
    out[(grid < uniq[0]) | (grid > uniq[-1])] = np.nan
    return out


def _clinical_curve_inputs(curves: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``(probs, labels)`` or a mapping name -> ``(probs, labels)`` as validated binary arrays by name."""
    from .clinical import _binary_arrays

    if isinstance(curves, tuple) and len(curves) == 2:
        curves = {"model": curves}
    if not isinstance(curves, Mapping) or not curves:
        raise TypeError("`curves` must be (probs, labels) or a mapping name -> (probs, labels)")
    data = {}
    for name, value in curves.items():
        if not (isinstance(value, tuple) and len(value) == 2):
            raise TypeError(f"curve {name!r} must be (probs, labels) with binary [N] probabilities")
        data[str(name)] = _binary_arrays(*value)
    return data


def _bootstrap_band(p: np.ndarray, y: np.ndarray, grid: np.ndarray, inside: np.ndarray, n_boot: int, level: float,
                    rng: np.random.Generator, show: bool, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The percentile band of the smoothed curve on ``grid[inside]``: rows resampled (above ``BINNED_FROM`` rows on
    the risk grid, as :func:`bootstrap_clinical`'s ``method="binned"``)."""
    import warnings

    from ._binned import binned_smoothed_curves
    from .bootstrap import BINNED_FROM

    boot = np.full((n_boot, grid.size), np.nan)
    if len(p) > BINNED_FROM:
        boot[:, inside] = binned_smoothed_curves(p, y, grid[inside], n_boot, rng)
    else:
        for b in progress_bar(range(n_boot), enabled=show, desc=f"calibration band ({name})", leave=False):
            idx = rng.integers(0, len(p), len(p))
            if np.unique(p[idx]).size > 1:
                boot[b] = _smoothed_on_grid(p[idx], y[idx], grid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # grid points no resample reached
        lo, hi = np.nanquantile(boot[:, inside], [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi


def _draw_clinical_curve(ax, hx, name: str, p: np.ndarray, y: np.ndarray, grid: np.ndarray, inside: np.ndarray,
                         color: str, line: str, n_groups: int) -> None:
    """One curve: the smoothed curve (its CITL, slope and ICI in the legend), the logistic recalibration line,
    the observed proportions of ``n_groups`` risk groups, and the histogram of the predicted risk."""
    import warnings

    from .clinical import _clinical

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0 / 1 probabilities: the caller saw it elsewhere
        stats = _clinical(p, y)
    # drawn within [0, 1]: lowess extrapolates past the proportions it smooths (val.prob's E-statistics use it as is)
    ax.plot(grid[inside], np.clip(_smoothed_on_grid(p, y, grid)[inside], 0.0, 1.0), color=color, ls=line, lw=1.8,
            label=f"{name}: CITL {stats['calibration_in_the_large']:.2f}, slope {stats['slope']:.2f}, "
                  f"ICI {stats['e_avg']:.3f}")
    if np.isfinite(stats["slope"]):
        with np.errstate(divide="ignore"):
            lg = np.log(grid / (1 - grid))
        ax.plot(grid, 1 / (1 + np.exp(-(stats["intercept"] + stats["slope"] * lg))), color=color, lw=0.8,
                ls=(0, (1, 1)))
    order = np.argsort(p, kind="stable")
    groups = [g for g in np.array_split(order, min(n_groups, len(p))) if g.size]
    ax.plot([p[g].mean() for g in groups], [y[g].mean() for g in groups], ls="none", marker="^", ms=5,
            mfc="white", mec=color)
    hx.hist(p, bins=100, range=(0, 1), histtype="step", color=color, ls=line, lw=1.2)


def plot_clinical_calibration(
    curves: Any,
    *,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int | None = 0,
    n_groups: int = 10,
    title: str | None = None,
    figsize: tuple[float, float] = (5.0, 6.0),
    progress: bool | None = None,
):
    """A calibration plot as clinical journals draw it (Van Calster et al. 2016; R's ``val.prob``).

    For each curve: the smoothed calibration curve (val.prob's lowess, see
    :func:`medloss.calibration.smoothed_calibration_curve`) with a percentile bootstrap band, the
    logistic recalibration line ``plogis(a + b logit p)``, and the observed proportion of events in
    ``n_groups`` equal-size groups of predicted risk (deciles by default, triangles); the ideal
    diagonal; and below, the distribution of predicted risk (100 bins, as val.prob's spike
    histogram). The legend gives each curve's calibration-in-the-large, slope and ICI.

    Args:
        curves: ``(probs, labels)`` with binary ``[N]`` probabilities, or a mapping name ->
            ``(probs, labels)`` to overlay models or before / after calibration.
        n_boot: bootstrap resamples for the band (default 200; 0 draws no band). Rows are
            resampled (above 2,000 rows on a fine grid of the risk, as :func:`bootstrap_clinical`'s
            ``method="binned"``); the band is drawn for every curve.
        level: coverage of the band (default 0.95).
        seed: seeds the bootstrap (default 0).
        n_groups: groups of predicted risk for the observed proportions (default 10).
        title: figure title.
        figsize: inches (default 5 x 6, a journal column).
        progress: progress bar for the bootstrap (default: when it takes > 1000 smoothings).

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ValueError / TypeError: as :func:`medloss.calibration.clinical_calibration` for each curve's
            input, or for a bad ``n_boot`` / ``level`` / ``n_groups``.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> p = rng.uniform(0.05, 0.95, 400)
        >>> fig = plot_clinical_calibration((p, rng.binomial(1, p)), n_boot=20)
        >>> [ax.get_ylabel() for ax in fig.axes]
        ['observed proportion', 'samples']
    """
    from .._validation import check_number

    rcParams = require("matplotlib", "plot_clinical_calibration").rcParams

    check_int(n_boot, "n_boot", low=0)
    check_int(n_groups, "n_groups", low=1)
    level = check_number(level, "level", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    data = _clinical_curve_inputs(curves)
    fig, ax, hx = _two_panels(figsize)
    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    ax.plot([0, 1], [0, 1], color="0.75", lw=3, label="ideal")
    grid = np.linspace(0.0, 1.0, 201)
    rng = np.random.default_rng(seed)
    show = progress if progress is not None else n_boot * len(data) > 1000
    for i, (name, (p, y)) in enumerate(data.items()):
        color, line = colors[i % len(colors)], styles[i % len(styles)]
        inside = (grid >= p.min()) & (grid <= p.max())
        if n_boot:
            lo, hi = _bootstrap_band(p, y, grid, inside, n_boot, level, rng, show, name)
            ax.fill_between(grid[inside], np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0), color=color, alpha=0.15, lw=0)
        _draw_clinical_curve(ax, hx, name, p, y, grid, inside, color, line, n_groups)
    ax.plot([], [], color="0.3", lw=0.8, ls=(0, (1, 1)), label="logistic recalibration a + b logit(p)")
    ax.plot([], [], ls="none", marker="^", mfc="white", mec="0.3", label=f"observed proportion, {n_groups} risk groups")
    if n_boot:
        ax.fill_between([], [], [], color="0.5", alpha=0.15, lw=0,
                        label=f"{level:.0%} bootstrap band ({n_boot} resamples)")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed proportion")
    ax.grid(alpha=0.3)
    hx.set(xlabel="predicted probability", ylabel="samples")
    hx.grid(alpha=0.3)
    return _finish(fig, ax, hx, title)
