"""Self-contained HTML reports (figures embedded), their PNGs, and the figures themselves."""

from __future__ import annotations

import base64
import contextlib
import html
import io
import logging
import platform
import re
import sys
from typing import Any

import numpy as np

from .evaluate import (
    CLINICAL_ROWS,
    N_BINS,
    SATURATION,
    VERDICT_RULE,
    binning_note,
    saturation_note,
    verdict_sentence,
)
from .io import RunDirectory

STYLE = (
    "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;"
    "padding:0 1em;color:#222}h1{font-size:1.6em}"
    "h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}"
    "table{border-collapse:collapse;margin:.6em 0;font-size:.92em}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
    "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
    "figure{display:inline-block;margin:.5em 1em .5em 0}figcaption{font-size:.85em;color:#555;max-width:520px}"
    "code,pre{background:#f6f6f6;padding:.1em .3em;font-size:.9em}pre{padding:.6em;overflow-x:auto}"
    ".note{color:#555;font-size:.9em}.facts td,.facts th{text-align:left}"
    ".toc{font-size:.9em;columns:2;background:#fafafa;padding:.4em 1em;border:1px solid #eee}"
    ".toc ol{margin:.3em 0}"
    ".warning{border-left:4px solid #c0392b;background:#fdf0ee;padding:.5em .8em;font-weight:600}"
)


def esc(value: Any) -> str:
    """HTML-escape anything that may come from the user's data."""
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (float, np.floating)):
        return "n/a" if not np.isfinite(value) else f"{float(value):.{digits}f}"
    return str(value)


def fmt_ci(ci: dict[str, Any] | None, digits: int = 4) -> str:
    if not ci:
        return "n/a"
    return f"{fmt(ci['estimate'], digits)} [{fmt(ci['low'], digits)}, {fmt(ci['high'], digits)}]"


INTERVAL_NOTE = ("Intervals: 95% bias-corrected and accelerated (BCa) bootstrap of the test rows. A mark † points to "
                 "the note below the table where an interval does not hold its estimate strictly inside (a biased "
                 "estimator at this sample size, an estimate equal to a bound) or its bounds rest on the most extreme "
                 "resamples.")


MISSING_GLYPHS = ("Some labels hold characters that no installed font has; figures draw them as boxes. Install a "
                  "font that has them (for Chinese, Japanese or Korean class names: Noto Sans CJK, Debian package "
                  "fonts-noto-cjk); medloss uses it without configuration (if matplotlib was installed before the "
                  "font, delete its font cache, ~/.cache/matplotlib, once).")

#: fonts with CJK glyphs, tried after the default font for characters it lacks (matplotlib's per-glyph fallback)
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK TC", "Noto Sans CJK KR", "Source Han Sans SC",
             "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Droid Sans Fallback", "Microsoft YaHei", "SimHei",
             "PingFang SC", "Hiragino Sans", "Yu Gothic", "Malgun Gothic", "AppleGothic", "Arial Unicode MS")


def figure_fonts():
    """A ``matplotlib.rc_context`` in which labels fall back, glyph by glyph, from the default font to any
    installed CJK font, so that class names in Chinese, Japanese or Korean render in the report's figures."""
    import matplotlib
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    fallback = [name for name in CJK_FONTS if name in installed]
    stack = contextlib.ExitStack()
    if fallback:
        # named families, not the generic "sans-serif": matplotlib falls back glyph by glyph only along named ones
        default = font_manager.FontProperties(family=matplotlib.rcParams["font.family"]).get_name()
        stack.enter_context(matplotlib.rc_context({"font.family": [default, *fallback]}))
        # CJK fonts come in weight 500 only: matplotlib logs each substitution of its weight 400
        logger = logging.getLogger("matplotlib.font_manager")
        stack.callback(logger.setLevel, logger.level)
        logger.setLevel(logging.ERROR)
    return stack


class IntervalNotes:
    """Table cells for intervals, marked † n where the interval carries a note; :meth:`write` lists the notes
    under the table, so that no interval that excludes its estimate is shown without its reason."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def cell(self, ci: dict[str, Any] | None, what: str, digits: int = 4) -> str:
        text = fmt_ci(ci, digits)
        if ci and ci.get("note"):
            self.notes.append(f"†{len(self.notes) + 1} {what}: {ci['note']}.")
            text += f" †{len(self.notes)}"
        return text

    def write(self, report: Report) -> None:
        for note in self.notes:
            report.paragraph(note, note=True)
        self.notes = []


class Report:
    """Collects sections and renders one HTML file; figures are saved as PNGs and embedded."""

    def __init__(self, title: str, *, dpi: int = 130) -> None:
        self.title = title
        self.dpi = dpi  # of the embedded and saved PNGs
        self.parts: list[str] = []
        self.headings: list[str] = []
        self.figures: dict[str, bytes] = {}
        self.said: set[str] = set()

    def once(self, text: str, *, note: bool = True) -> None:
        """A paragraph that every run's section needs but the page states once (a rule, a convention)."""
        if text not in self.said:
            self.said.add(text)
            self.paragraph(text, note=note)

    def heading(self, text: str) -> None:
        self.parts.append(f'<h2 id="s{len(self.headings)}">{esc(text)}</h2>')
        self.headings.append(text)

    def paragraph(self, text: str, *, note: bool = False, warning: bool = False) -> None:
        cls = ' class="warning"' if warning else (' class="note"' if note else "")
        self.parts.append(f"<p{cls}>{esc(text)}</p>")

    def code(self, text: str) -> None:
        self.parts.append(f"<pre>{esc(text)}</pre>")

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def facts(self, rows: list[list[Any]]) -> None:
        """A two-column key / value table (left-aligned, no header)."""
        body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
        self.parts.append(f'<table class="facts"><tbody>{body}</tbody></table>')

    def figure(self, name: str, fig, caption: str) -> None:
        """Embed ``fig`` at one scale for every figure (96 CSS px per inch of the figure, so that text keeps its
        point size on the page and figures of equal size show at equal width) and keep its PNG. Characters no
        installed font has (drawn as boxes) give one note instead of a warning per glyph on the terminal."""
        import warnings

        buf = io.BytesIO()
        with warnings.catch_warnings(record=True) as caught:
            warnings.filterwarnings("always", message=r"Glyph \d+ .*missing from font")
            fig.savefig(buf, format="png", dpi=self.dpi, bbox_inches="tight")
        for w in caught:
            if "missing from font" not in str(w.message):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if any("missing from font" in str(w.message) for w in caught):
            self.once(MISSING_GLYPHS)
        data = buf.getvalue()
        self.figures[name] = data
        width = round(int.from_bytes(data[16:20], "big") * 96 / self.dpi)  # the PNG's IHDR width, in CSS px
        b64 = base64.b64encode(data).decode("ascii")
        self.parts.append(
            f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{b64}" width="{width}">'
            f'<figcaption style="max-width:{width}px">{esc(caption)}</figcaption></figure>'
        )

    def html(self) -> str:
        body = "\n".join(self.parts)
        # a table of contents, in the order the sections appear (headings may be moved with their parts)
        order = [int(m) for m in re.findall(r'<h2 id="s(\d+)">', body)]
        toc = "".join(f'<li><a href="#s{i}">{esc(self.headings[i])}</a></li>' for i in order)
        nav = f'<nav class="toc"><strong>Contents</strong><ol>{toc}</ol></nav>' if len(order) > 2 else ""
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(self.title)}</title>"
                f"<style>{STYLE}</style></head><body><h1>{esc(self.title)}</h1>\n{nav}\n{body}\n</body></html>\n")

    def write(self, run: RunDirectory, name: str = "report.html") -> None:
        for fname, data in self.figures.items():
            run.path(fname).write_bytes(data)
        run.path(name).write_text(self.html(), encoding="utf-8")


def environment() -> dict[str, str]:
    import matplotlib
    import sklearn
    import torch

    from .. import __version__

    return {"medloss": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": np.__version__, "scikit-learn": sklearn.__version__, "matplotlib": matplotlib.__version__,
            "platform": platform.platform()}


def confusion_figure(cm: np.ndarray, class_names: list[str], title: str):
    from matplotlib.figure import Figure

    k = len(class_names)
    fig = Figure(figsize=(1.2 + 0.6 * k, 1.0 + 0.6 * k))
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels([str(c)[:14] for c in class_names], rotation=45, ha="right")
    ax.set_yticklabels([str(c)[:14] for c in class_names])
    top = cm.max() if cm.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > top / 2 else "black")
    return fig


def training_figure(history: dict[str, list[float]], best_epoch: int, title: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.2))
    ax = fig.subplots()
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    ax.plot(epochs, history["train_loss"], label="train")
    ax.plot(epochs, history["val_loss"], label="validation")
    if best_epoch:
        ax.axvline(best_epoch, color="0.5", ls="--", lw=1, label=f"best epoch {best_epoch}")
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    return fig


def add_evaluation(report: Report, before: dict, after: dict, class_names: list[str], task: str,
                   calibrator: str, *, check: dict | None = None, n_bins: int = N_BINS) -> None:
    """Metric tables (with 95% BCa bootstrap intervals) before / after calibration, per-class report, ordinal.
    ``check`` (:func:`calibration_check`): the verdict by the rule stated once per page, prominent when calibration
    hurt or could not be fitted."""
    report.heading("Test metrics (95% BCa bootstrap intervals)")
    if check is not None:
        if check["verdict"] == "not fitted":
            report.paragraph(f"Calibration could not be fitted: {check['unfitted']}", warning=True)
        report.paragraph(verdict_sentence(check, calibrator), warning=check["verdict"] == "hurt")
        report.once(VERDICT_RULE)
        flag = saturation_note(check)
        if flag is not None:
            report.paragraph(flag, warning=True)
    report.once(binning_note(n_bins))
    report.once(INTERVAL_NOTE)
    notes = IntervalNotes()
    rows = []
    for key, label in [("ece", "ECE"), ("mce", "MCE"), ("adaptive_ece", "adaptive ECE"),
                       ("brier", "Brier score"), ("nll", "NLL")]:
        rows.append([label, notes.cell(before["calibration"][key], f"uncalibrated {label}"),
                     notes.cell(after["calibration"][key], f"calibrated {label}")])
    cb, ca = before["classification"], after["classification"]
    for key, label in [("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
                       ("macro_f1", "macro F1"), ("roc_auc", "ROC AUC"), ("roc_auc_ovr", "ROC AUC (one-vs-rest)")]:
        if key in cb:
            rows.append([label, fmt(cb[key]), fmt(ca.get(key))])
    if task == "ordinal":
        for key, label in [("qwk", "quadratic weighted kappa"), ("mae", "MAE (grades)"),
                           ("within_1", "within-1 accuracy"), ("kendall_tau_b", "Kendall tau-b"),
                           ("spearman_rho", "Spearman rho")]:
            rows.append([label, fmt(before["ordinal"][key]), fmt(after["ordinal"][key])])
    after_label = f"after {calibrator} scaling"
    if check is not None and check["verdict"] in ("hurt", "not fitted"):
        after_label += {"hurt": " (hurt: not recommended)", "not fitted": " (not fitted)"}[check["verdict"]]
    report.table(["metric", "uncalibrated", after_label], rows)
    notes.write(report)
    report.heading("Per-class report (after calibration)")
    rep = ca["classification_report"]
    per_class = []
    for i, name in enumerate(class_names):
        r = rep.get(name, {})
        per_class.append([name, fmt(r.get("precision")), fmt(r.get("recall")), fmt(r.get("f1-score")),
                          fmt(ca["specificity"][i]), int(r.get("support", 0))])
    report.table(["class", "precision", "recall = sensitivity", "F1", "specificity", "support"], per_class)
    if task == "ordinal":
        th = after["ordinal"]["threshold_sensitivity_specificity"]
        rows = [[f">= {class_names[k]}", fmt(s), fmt(p), pos] for k, s, p, pos in
                zip(th["threshold"], th["sensitivity"], th["specificity"], th["positives"], strict=True)]
        report.heading("Grade thresholds (after calibration)")
        report.table(["grade at least", "sensitivity", "specificity", "positives"], rows)


def add_clinical(report: Report, before: dict, after: dict, class_names: list[str], calibrator: str) -> None:
    """The clinical calibration hierarchy (TRIPOD) before / after calibration with 95% bootstrap intervals."""
    cb, ca = before.get("clinical"), after.get("clinical")
    if not cb or not ca:
        return
    report.heading("Clinical calibration (TRIPOD; equal to R's rms::val.prob)")
    what = {"binary": f"the predicted probability of {class_names[-1]!r}",
            "per_class": "each class against the rest", "per_threshold": "each threshold P(grade > k)"}[cb["kind"]]
    report.paragraph(
        f"For {what}: calibration-in-the-large (logit shift with the slope fixed at 1), the logistic recalibration "
        "slope and intercept, the integrated calibration index (mean distance between the predictions and the "
        "smoothed observed proportions; E90 / Emax: its 90th percentile / maximum) and Spiegelhalter's z. A slope "
        "below 1 means over-confident (too extreme) predictions. Exact 0 / 1 probabilities are left out of the "
        "logistic fits, as val.prob does.", note=True)
    for note in dict.fromkeys(cb["notes"] + ca["notes"]):
        report.paragraph(note, note=True)
    if cb["metrics"] is None or ca["metrics"] is None:
        return
    after_label = f"after {calibrator} scaling"
    notes = IntervalNotes()
    if cb["kind"] == "binary":
        rows = [[label, notes.cell(cb["metrics"][k], f"uncalibrated {label}"),
                 notes.cell(ca["metrics"][k], f"calibrated {label}")] for k, label in CLINICAL_ROWS]
        report.table(["metric", "uncalibrated", after_label], rows)
        notes.write(report)
        return
    rows = []
    for j, part in ca["metrics"].items():
        name = class_names[int(j)] if cb["kind"] == "per_class" else f"grade > {class_names[int(j)]}"
        for k, label in CLINICAL_ROWS[:4]:
            rows.append([f"{name}: {label}", notes.cell(cb["metrics"][j][k], f"uncalibrated {name}: {label}"),
                         notes.cell(part[k], f"calibrated {name}: {label}")])
    report.table(["class / threshold: metric", "uncalibrated", after_label], rows)
    notes.write(report)


def add_subgroups(report: Report, subgroups: dict, column: str, calibrator: str) -> None:
    """Subgroup calibration (after calibration) with 95% bootstrap intervals, one row per value of ``column``."""
    report.heading(f"Calibration by subgroup ({column}, after {calibrator} scaling)")
    report.paragraph("Each subgroup is bootstrapped on its own; a subgroup whose slope or calibration-in-the-large "
                     "interval excludes the ideal value (1, 0) is miscalibrated there even if the whole set is not.",
                     note=True)
    rows = []
    notes = IntervalNotes()
    for value, entry in subgroups.items():
        ci = entry["intervals"]
        cells = ([notes.cell(ci[k].to_dict(), f"{value}: {label}") for k, label in
                  (("calibration_in_the_large", "calibration-in-the-large"), ("slope", "slope"), ("e_avg", "ICI"))]
                 if ci is not None else [entry["error"], "", ""])
        rows.append([value, entry["n"], entry["events"], *cells])  # Report.table escapes every cell
    report.table([column, "n", "events", "calibration-in-the-large", "slope", "ICI"], rows)
    notes.write(report)


def add_selection(report: Report, calibrator: Any) -> None:
    """``--method auto``: the cross-validated scores of every family and why the chosen one was chosen."""
    found = getattr(calibrator, "selection_", None)
    if found is None:
        return
    report.heading("Calibrator selection")
    rule = ("the simplest family whose held-out NLL is within one standard error of the best (the error of the "
            "per-fold differences)" if found.rule == "one_se" else "the best held-out mean")
    report.paragraph(
        f"Each family was fitted on {found.cv - 1} of {found.cv} folds of the validation rows (stratified by label) "
        f"and scored on the held-out fold; chosen: {found.best_name}, {rule}, refitted on every validation row. "
        "\"none\" is the uncalibrated model. Mean ± standard deviation over folds; lower is better.", note=True)
    rows = []
    for row in found.table:
        settings = ", ".join(f"{k} {v:g}" for k, v in row["settings"].items())
        rows.append([row["name"] + (f" ({settings})" if settings else ""),
                     *(f"{fmt(row[m], 4)} ± {fmt(row[m + '_sd'], 4)}" for m in ("nll", "ece", "brier")),
                     "yes" if row["within_one_se"] else "no", row["diverged_folds"]])
    report.table(["calibrator", "NLL", "ECE", "Brier", "within 1 SE of the best", "folds diverged"], rows)


def add_conformal(report: Report, conformal: dict, class_names: list[str]) -> None:
    """Conformal prediction sets: target and empirical coverage, set sizes, overall and per class."""
    method = {"lac": "LAC", "aps": "APS", "raps": "RAPS", "ordinal": "ordinal intervals"}[conformal["method"]]
    report.heading(f"Conformal prediction sets ({method}, alpha = {conformal['alpha']:g})")
    report.paragraph(
        f"Each evaluation row gets the set of classes whose conformal score is at most the quantile "
        f"{conformal['quantile']:.4f} of {conformal['n_calibration']} calibration rows; the set contains the true "
        f"class with probability at least {conformal['target_coverage']:.0%} (marginally, for rows exchangeable with "
        "the calibration rows). The prediction_set column of calibrated_predictions.csv lists it.", note=True)
    report.table(["", "coverage", "mean set size", "empty sets"],
                 [["all rows", fmt(conformal["coverage"], 3), fmt(conformal["mean_set_size"], 3),
                   conformal["empty_sets"]]])
    report.table(["true class", "n", "coverage", "mean set size"],
                 [[class_names[k], v["n"], fmt(v["coverage"], 3), fmt(v["mean_set_size"], 3)]
                  for k, v in conformal["per_class"].items()])


def add_operating_points(report: Report, points: dict, class_names: list[str]) -> None:
    """Thresholds chosen on validation and what they give on test (binary tasks), on the recommended
    probabilities, with a flag where saturated probabilities make thresholds meaningless."""
    report.heading("Operating points (thresholds chosen on validation, evaluated on test)")
    which = points["probabilities"]
    report.paragraph(
        f"Positive class: {class_names[-1]}. A case is called positive when its {which} probability (the ones this "
        "report recommends) is at least the threshold. Intervals: Wilson 95%; n = the denominator of each "
        "proportion.", note=True)
    sat = points["saturated"]
    if sat["validation"] or sat["test"]:
        report.paragraph(
            f"Saturation: {sat['validation']} of {sat['n_validation']} validation and {sat['test']} of "
            f"{sat['n_test']} test probabilities lie within {SATURATION:g} of 0 or 1. A threshold among them "
            "(printed 0.000 or 1.000) separates cases by rounding noise, not by risk: read those rows with care.",
            warning=True)

    def cell(d: dict) -> str:
        return f"{fmt(d['estimate'], 3)} [{fmt(d['low'], 3)}, {fmt(d['high'], 3)}] (n={d['n']})"

    report.table(["chosen for", "threshold", "sensitivity", "specificity", "PPV", "NPV"],
                 [[p["chosen_for"], fmt(p["threshold"], 3), cell(p["sensitivity"]), cell(p["specificity"]),
                   cell(p["ppv"]), cell(p["npv"])] for p in points["points"]])
