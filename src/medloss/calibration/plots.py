"""Reliability diagrams (matplotlib)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    figsize: tuple[float, float] = (5.0, 6.0),
):
    """Reliability diagram: per-bin accuracy against mean confidence, above a confidence histogram.

    Args:
        curves: ``(probs, labels)``, a :class:`ReliabilityCurve`, or a mapping name -> either,
            to overlay several models or before / after calibration.
        n_bins, binning: used when curves are computed here (default 15 uniform bins).
        title: figure title.
        show_gap: shade the gap between each bin's accuracy and the diagonal (first curve).
        figsize: inches (default 5 x 6, a journal column).

    Each curve's ECE (and MCE) is in the legend; empty bins are skipped. Returns the matplotlib
    ``Figure`` (save it with ``fig.savefig("reliability.png", dpi=200)``).
    """
    check_int(n_bins, "n_bins", low=1)
    check_choice(binning, "binning", BINNINGS)
    data = _as_curves(curves, n_bins, binning)
    # a bare Figure (no pyplot): no global state, no backend or display needed, nothing to close
    from matplotlib import rcParams
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    ax, hx = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.08})
    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1, label="perfect calibration")
    first = next(iter(data.values()))
    for i, (name, c) in enumerate(data.items()):
        color = colors[i % len(colors)]
        keep = c.counts > 0
        x, acc = c.mean_confidence[keep], c.accuracy[keep]
        if i == 0 and show_gap:
            lo, hi = c.edges[:-1][keep], c.edges[1:][keep]
            centers = (lo + hi) / 2
            ax.bar(
                centers, acc - x, bottom=x, width=(hi - lo) * 0.9, color="tab:red", alpha=0.25,
                edgecolor="none", label="gap to diagonal",
            )
        ax.plot(x, acc, marker="o", ms=4, color=color, label=f"{name} (ECE {c.ece:.3f}, MCE {c.mce:.3f})")
        hx.hist(
            c.edges[:-1], bins=c.edges, weights=c.counts / max(c.n_samples, 1), histtype="step",
            color=color, lw=1.5,
        )
    xlabel = "predicted probability of the positive class" if first.binary else "confidence (top-label probability)"
    ylabel = "observed fraction of positives" if first.binary else "accuracy"
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel=ylabel)
    ax.set_aspect("auto")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    hx.set(xlabel=xlabel, ylabel="fraction of samples")
    hx.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    fig.align_ylabels([ax, hx])
    return fig


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
