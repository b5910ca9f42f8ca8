"""Reliability diagrams (matplotlib)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

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
    each bin of the first curve. Empty bins are skipped. Returns the matplotlib ``Figure`` (save
    it with ``fig.savefig("reliability.png", dpi=200, bbox_inches="tight")``).
    """
    check_int(n_bins, "n_bins", low=1)
    check_int(min_count, "min_count", low=0)
    check_choice(binning, "binning", BINNINGS)
    data = _as_curves(curves, n_bins, binning)
    # a bare Figure (no pyplot): no global state, no backend or display needed, nothing to close
    from matplotlib import rcParams
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    ax, hx = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.08})
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
    handles, labels = ax.get_legend_handles_labels()
    hx.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.0, -0.45), fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
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
    """Save a figure atomically: to a temporary file in the same folder, then renamed."""
    import os
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1] or ".png"
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
