"""``medloss train`` and ``medloss calibrate``: from a file to a report."""

from __future__ import annotations

import dataclasses
import shlex
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..calibration import clinical_calibration_by_subgroup, plot_clinical_calibration, plot_reliability_diagram
from .data import Preprocessor, prepare_target, select_features, stratified_splits
from .evaluate import (
    calibration_check,
    conformal_report,
    evaluate,
    finite_logit_rows,
    fit_calibrator,
    left_out_note,
    operating_points,
    probabilities,
    saturated,
)
from .io import RunDirectory, UserError, read_table
from .report import (
    Report,
    add_clinical,
    add_conformal,
    add_evaluation,
    add_operating_points,
    add_selection,
    add_subgroups,
    confusion_figure,
    environment,
    esc,
    figure_fonts,
    training_figure,
)
from .train import build_loss, predict_log_probabilities, train


@dataclass
class TrainConfig:
    data: str
    target: str
    out: str
    task: str = "binary"
    binarize: str | None = None
    num_classes: int | None = None
    grades: tuple[str, ...] | None = None
    features: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    id_column: str | None = None
    loss: str = "ce"
    class_weights: str | None = None
    calibrator: str = "temperature"
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    batch_norm: bool = True
    epochs: int = 200
    patience: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    n_boot: int = 1000
    n_bins: int = 15
    force: bool = False
    progress: bool = True
    #: the confusion matrix and training curves besides the calibration figures (``medloss demo --quick``: off)
    diagnostic_figures: bool = True
    command: str = ""
    subgroup: str | None = None
    conformal: float | None = None
    conformal_method: str = "aps"


def command_line() -> str:
    return "medloss " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _check_subgroup_column(df: pd.DataFrame, cfg: TrainConfig) -> None:
    """``--subgroup`` names a complete feature column of a binary task."""
    if cfg.subgroup is None:
        return
    if cfg.subgroup not in df.columns or cfg.subgroup == cfg.target:
        raise UserError(f"--subgroup {cfg.subgroup!r} is not a feature column of {cfg.data}")
    if cfg.task != "binary":
        raise UserError("--subgroup reports the clinical calibration of binary models: use --task binary")
    if df[cfg.subgroup].isna().any():
        raise UserError(f"the --subgroup column {cfg.subgroup!r} has empty cells")


#: why a calibrator that diverged on the validation split is not fitted, and what the user can do
SEPARABLE = (
    "the model separates the validation rows perfectly, so the validation NLL keeps falling as the probabilities "
    "are made more extreme and no finite calibration minimises it. The probabilities in this report are therefore "
    "uncalibrated (a temperature is left at T = 1), even where the test split shows miscalibration (read its "
    "calibration slope and Spiegelhalter z below). What you can do: calibrate on a validation split the model does "
    "not separate (more rows, or rows from another site), regularise the model (dropout, weight decay, a "
    "train-time calibration loss such as mdca or focal_adaptive), or use a calibrator with fewer parameters.")


def _fit_on_validation(method: str, logits: torch.Tensor, labels: np.ndarray, notes: list[str], *, seed: int = 0):
    """The calibrator fitted on validation rows (never test); its warnings become notes. A validation split the
    model separates perfectly has no finite NLL-optimal calibration (T -> 0 would make every prediction 0 % or
    100 %): the calibrator gets ``unfitted_reason_`` (:data:`SEPARABLE`) and a temperature stays at 1."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            calibrator = fit_calibrator(method, logits, labels, seed=seed)
        except ValueError as err:
            raise UserError(str(err)) from None
    calibrator.unfitted_reason_ = SEPARABLE if getattr(calibrator, "diverged_", False) else None
    if calibrator.unfitted_reason_ is not None and hasattr(calibrator, "temperature_"):
        calibrator.temperature_ = 1.0
    if calibrator.unfitted_reason_ is None:
        notes.extend(f"calibrator: {w.message}" for w in caught)
    return calibrator


def _evaluate_pair(p_before: torch.Tensor, p_after: torch.Tensor, labels: np.ndarray, class_names: list[str],
                   task: str, cfg: Any, calibrator: Any, row_names: list[str]) -> tuple[dict, dict, dict]:
    """``(before, after, check)``: the test metrics of both probabilities, the clinical hierarchy of both on the
    same rows (those with no probability of exactly 0 or 1; a note names the others), and the verdict with the
    saturation counts."""
    keep = finite_logit_rows(p_before, p_after)
    bars = None if cfg.progress else False  # the bootstraps' bars where they are long
    before, after = (evaluate(p, labels, class_names, task, n_boot=cfg.n_boot, seed=cfg.seed, progress=bars,
                              clinical_rows=keep, n_bins=cfg.n_bins) for p in (p_before, p_after))
    note = left_out_note(keep, row_names)
    if note is not None:
        before["clinical"]["notes"].insert(0, note)
    check = calibration_check(before, after, unfitted=getattr(calibrator, "unfitted_reason_", None))
    check["saturated"] = {"uncalibrated": saturated(p_before), "calibrated": saturated(p_after), "n": len(labels)}
    return before, after, check


def _train_figures(report: Report, prefix: str, title: str, cfg: TrainConfig, p_before: torch.Tensor,
                   p_after: torch.Tensor, y_test: np.ndarray, class_names: list[str], after: dict, result) -> None:
    """The test split's reliability diagram and clinical calibration plot, and (``cfg.diagnostic_figures``) its
    confusion matrix and the training curves."""
    report.heading("Figures")
    report.figure(f"{prefix}reliability.png", plot_reliability_diagram(
        _reliability_curves(p_before, p_after, y_test, cfg.calibrator),
        n_bins=cfg.n_bins, title=f"Reliability on the test split ({title})"),
        "Reliability diagram on the test split with the confidence histogram; ECE and MCE in the legend.")
    _clinical_figure(report, f"{prefix}clinical_calibration.png", p_before, p_after, y_test, cfg.task,
                     cfg.calibrator, class_names, n_boot=cfg.n_boot, seed=cfg.seed,
                     title=f"Calibration on the test split ({title})")
    if not cfg.diagnostic_figures:
        return
    cm = np.asarray(after["classification"]["confusion_matrix"])
    report.figure(f"{prefix}confusion_matrix.png", confusion_figure(cm, class_names, "Confusion matrix (test)"),
                  "Confusion matrix on the test split (rows: truth).")
    report.figure(f"{prefix}training_curves.png", training_figure(result.history, result.best_epoch, "Loss"),
                  "Training and validation loss; the dashed line marks the checkpoint kept.")


def _validation_halves(val_logits: torch.Tensor, val_y: np.ndarray, cfg: TrainConfig, notes: list[str]):
    """``(fit logits, fit labels, conformal logits, conformal labels)``: with ``--conformal`` the conformal quantile
    needs validation rows the calibrator did not see, so the validation split is halved (seeded); else the
    calibrator fits on all of it (no conformal rows)."""
    if cfg.conformal is None:
        return val_logits, val_y, None, None
    rows = np.random.default_rng(cfg.seed).permutation(len(val_y))
    half = len(rows) // 2
    notes.append(f"conformal sets: the calibrator was fitted on {half} validation rows, the conformal "
                 f"quantile computed on the other {len(rows) - half}")
    fit, conf = torch.from_numpy(rows[:half]), torch.from_numpy(rows[half:])
    return val_logits[fit], val_y[rows[:half]], val_logits[conf], val_y[rows[half:]]


def _conformal_on_test(cfg: TrainConfig, calibrator, conformal_logits: torch.Tensor, conformal_y: np.ndarray,
                       p_test: torch.Tensor, y_test: np.ndarray) -> dict:
    """The conformal report of the test split (its quantile from the held-out validation rows)."""
    try:
        report, _ = conformal_report(cfg.conformal_method, cfg.conformal, calibrator.predict_proba(conformal_logits),
                                     conformal_y, p_test, y_test)
    except ValueError as err:
        raise UserError(f"--conformal: {err}") from None
    return report


def _present(**entries: Any) -> dict[str, Any]:
    """The entries that are not None (the optional parts of a run's metrics)."""
    return {key: value for key, value in entries.items() if value is not None}


def _row_names(df: pd.DataFrame, id_column: str | None, rows: np.ndarray) -> list[str]:
    """How the report names rows of ``df``: by their id column's value, or by their row number in the data."""
    if id_column:
        return [f"id {v}" for v in df[id_column].iloc[rows].astype(str)]
    return [f"row {i}" for i in df.index[rows]]


def _operating_points(check: dict, calibrator: Any, val_logits: torch.Tensor, y_val: np.ndarray,
                      test_logits: torch.Tensor, y_test: np.ndarray) -> dict | None:
    """Binary tasks: the operating points on the probabilities the verdict recommends (validation rows choose,
    test rows evaluate), with the saturated rows counted; None otherwise."""
    if test_logits.ndim != 1:
        return None
    calibrated = check["recommended"] == "calibrated"
    p_val, p_test = ((calibrator.predict_proba(z) if calibrated else probabilities(z)).numpy()
                     for z in (val_logits, test_logits))
    return {"probabilities": check["recommended"],
            "saturated": {"validation": saturated(p_val), "test": saturated(p_test),
                          "n_validation": len(p_val), "n_test": len(p_test)},
            "points": operating_points(p_val, y_val, p_test, y_test)}


def train_on_frame(df: pd.DataFrame, cfg: TrainConfig, run: RunDirectory, report: Report,
                   *, section: str = "", label: str = "") -> dict[str, Any]:
    """Everything after reading the file: target, splits, preprocessing, training, calibration,
    evaluation; adds its sections to ``report`` and returns the metrics. ``section`` prefixes the file
    names (a slug), ``label`` titles the report's sections (e.g. the loss spec as written)."""
    df, target = prepare_target(df, cfg.target, cfg.task, binarize=cfg.binarize, num_classes=cfg.num_classes,
                                grades=cfg.grades)
    _check_subgroup_column(df, cfg)
    splits = stratified_splits(target.y, seed=cfg.seed)
    df.columns = [str(c) for c in df.columns]
    selection = select_features(df, cfg.target, features=cfg.features, exclude=cfg.exclude, id_column=cfg.id_column)
    for note in selection.notes:
        print(f"medloss train: notice: {note}", file=sys.stderr)
    target.notes.extend(selection.notes)
    features = df[selection.columns]
    pre = Preprocessor().fit(features.iloc[splits.train], schema=features)
    x = {name: pre.transform(features.iloc[idx]) for name, idx in
         (("train", splits.train), ("val", splits.val), ("test", splits.test))}
    y = {name: target.y[idx] for name, idx in (("train", splits.train), ("val", splits.val), ("test", splits.test))}
    setup = build_loss(cfg.loss, cfg.task, target.num_classes, y["train"], cfg.class_weights)
    prefix = f"{section}_" if section else ""
    t0 = time.perf_counter()
    result = train(
        setup, x["train"], y["train"], x["val"], y["val"], hidden=cfg.hidden, dropout=cfg.dropout,
        batch_norm=cfg.batch_norm,
        epochs=cfg.epochs, patience=cfg.patience, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
        checkpoint=run.path(f"{prefix}model.pt"), progress=cfg.progress,
        desc=f"training {label or section or cfg.loss}",
    )
    train_seconds = time.perf_counter() - t0
    val_logits = predict_log_probabilities(setup, result.model, x["val"])
    test_logits = predict_log_probabilities(setup, result.model, x["test"])
    fit_logits, fit_y, conformal_logits, conformal_y = _validation_halves(val_logits, y["val"], cfg, target.notes)
    calibrator = _fit_on_validation(cfg.calibrator, fit_logits, fit_y, target.notes, seed=cfg.seed)
    calibrator.save(run.path(f"{prefix}calibrator.json"))
    cfg = chosen_method(cfg, calibrator)
    p_before = probabilities(test_logits)
    p_after = calibrator.predict_proba(test_logits)
    before, after, check = _evaluate_pair(p_before, p_after, y["test"], target.class_names, cfg.task, cfg,
                                          calibrator, _row_names(df, selection.id_column, splits.test))
    conformal = None
    if cfg.conformal is not None:
        conformal = _conformal_on_test(cfg, calibrator, conformal_logits, conformal_y, p_after, y["test"])
    points = _operating_points(check, calibrator, val_logits, y["val"], test_logits, y["test"])

    title = label or section or f"{cfg.task} target {cfg.target!r}"
    report.heading(f"Run: {title}")
    report.facts([
        ["data", cfg.data], ["target", cfg.target], ["task", cfg.task], ["loss", cfg.loss],
        ["class weights", cfg.class_weights or "none"], ["classes", ", ".join(target.class_names)],
        ["rows train / validation / test", f"{len(splits.train)} / {len(splits.val)} / {len(splits.test)}"],
        ["features", f"{len(pre.numeric)} numeric, {len(pre.categorical)} categorical -> {len(pre.feature_names())}"],
        ["network", f"MLP {list(cfg.hidden)}, dropout {cfg.dropout}, batch norm {'on' if cfg.batch_norm else 'off'}"],
        ["training", f"{len(result.history['train_loss'])} epochs, best {result.best_epoch}, {result.stopped}, "
                     f"{train_seconds:.1f} s"],
        ["calibrator (fitted on validation)", _describe_calibrator(calibrator)],
    ])
    for note in target.notes:
        report.paragraph(note, note=True)
    add_selection(report, calibrator)
    add_evaluation(report, before, after, target.class_names, cfg.task, cfg.calibrator, check=check,
                   n_bins=cfg.n_bins)
    add_clinical(report, before, after, target.class_names, cfg.calibrator)
    subgroups = None
    if cfg.subgroup is not None:
        values = df[cfg.subgroup].iloc[splits.test].astype(str).str.strip().to_numpy()
        subgroups = clinical_calibration_by_subgroup(p_after, y["test"], values, n_boot=cfg.n_boot, seed=cfg.seed)
        add_subgroups(report, subgroups, cfg.subgroup, cfg.calibrator)
    if points is not None:
        add_operating_points(report, points, target.class_names)
    if conformal is not None:
        add_conformal(report, conformal, target.class_names)
    _train_figures(report, prefix, title, cfg, p_before, p_after, y["test"], target.class_names, after, result)
    return {
        "data": cfg.data, "target": cfg.target, "task": cfg.task, "loss": cfg.loss,
        "class_names": target.class_names, "notes": target.notes,
        "splits": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "training": {"epochs": len(result.history["train_loss"]), "best_epoch": result.best_epoch,
                     "stopped": result.stopped, "seconds": train_seconds, "history": result.history},
        "calibrator": {"method": cfg.calibrator, **calibrator.to_dict(), **_selection_json(calibrator)},
        **_present(conformal=conformal),
        "preprocessing": pre.to_dict(), "id_column": selection.id_column,
        # what `medloss predict` needs to rebuild the network and its output head
        "model": {"task": cfg.task, "loss": cfg.loss, "class_weights": cfg.class_weights, "hidden": list(cfg.hidden),
                  "dropout": cfg.dropout, "batch_norm": cfg.batch_norm, "n_features": len(pre.feature_names())},
        "test_uncalibrated": before, "test_calibrated": after, "calibration_check": check,
        **_present(operating_points=points, subgroups=subgroups and _subgroups_json(subgroups)),
    }


def _reliability_curves(p_before: torch.Tensor, p_after: torch.Tensor, y: np.ndarray, calibrator: str) -> dict:
    """The curves of a before / after diagram; one curve when calibration changed nothing (T = 1),
    so that the second does not hide the first."""
    labels = torch.from_numpy(y)
    if p_before.shape == p_after.shape and torch.equal(p_before.double(), p_after.double()):
        return {"uncalibrated = calibrated (the calibrator changed nothing)": (p_before, labels)}
    return {"uncalibrated": (p_before, labels), f"{calibrator} scaled": (p_after, labels)}


def _clinical_figure(report: Report, name: str, p_before: torch.Tensor, p_after: torch.Tensor, y: np.ndarray,
                     task: str, calibrator: str, class_names: list[str], *, n_boot: int, seed: int,
                     title: str) -> None:
    """The clinicians' calibration plot: before / after with bootstrap bands for a binary model (class 1 of
    a two-column softmax); otherwise one figure before and one after calibration, with the curve of each class
    (threshold P(grade > k) for ordinal tasks). Classes with one outcome in the split are left out."""
    if p_after.ndim == 2 and p_after.shape[1] == 2 and task != "ordinal":
        p_before, p_after = p_before[:, 1], p_after[:, 1]
    if p_after.ndim == 1:
        same = torch.equal(p_before.double(), p_after.double())
        curves = {"uncalibrated = calibrated": (p_before, y)} if same else {
            "uncalibrated": (p_before, y), f"after {calibrator} scaling": (p_after, y)}
        band = min(n_boot, 200)
        caption = (f"Calibration plot as clinical journals draw it: smoothed observed proportion (val.prob's lowess) "
                   f"with a 95% bootstrap band ({band} resamples), the logistic recalibration line, observed "
                   "proportions in 10 risk groups and the distribution of predicted risk; CITL, slope and ICI in "
                   "the legend.")
    else:  # one curve per class / threshold: a figure before and one after calibration, side by side
        same = torch.equal(p_before.double(), p_after.double())
        kind = "per grade threshold" if task == "ordinal" else "per class (one vs rest)"
        for probs, suffix, what in ([(p_after, "", "uncalibrated = calibrated (not fitted)")] if same else
                                    [(p_before, "_uncalibrated", "uncalibrated"),
                                     (p_after, "", f"after {calibrator} scaling")]):
            curves = _class_curves(probs, y, task, class_names)
            caption = (f"Calibration {kind}, {what}: smoothed observed proportion, logistic recalibration line, 10 "
                       "risk groups; CITL, slope and ICI in the legend.")
            _add_clinical_plot(report, name.replace(".png", f"{suffix}.png"), curves, 0, seed, f"{title}\n{what}",
                               caption)
        return
    _add_clinical_plot(report, name, curves, band, seed, title, caption)


def _class_curves(probs: torch.Tensor, y: np.ndarray, task: str, class_names: list[str]) -> dict:
    """The binary curves of ``[N, K]`` probabilities, as the clinical table computes them: each class one vs
    rest, or each threshold P(grade > k) of an ordinal task; classes with one outcome or one distinct
    probability are left out."""
    from ..calibration.clinical import _one_vs_rest

    p = probs.detach().cpu().double().numpy()
    curves = {}
    for j, pj, yj in _one_vs_rest(p, y, task == "ordinal"):
        if 0 < yj.sum() < len(yj) and np.unique(pj).size > 1:
            label = f"P(grade > {class_names[j]})" if task == "ordinal" else f"{class_names[j]} vs rest"
            curves[label] = (pj, yj.astype(np.int64))
    return curves


def _add_clinical_plot(report: Report, name: str, curves: dict, band: int, seed: int, title: str,
                       caption: str) -> None:
    if not curves:
        return
    try:
        fig = plot_clinical_calibration(curves, n_boot=band, seed=seed, title=title, progress=False)
    except ValueError as err:  # one outcome or one distinct probability: said in the clinical section's notes
        report.paragraph(f"No calibration plot: {err}", note=True)
        return
    report.figure(name, fig, caption)


def _subgroups_json(subgroups: dict) -> dict:
    return {str(k): {**v, "intervals": None if v["intervals"] is None else
                     {m: ci.to_dict() for m, ci in v["intervals"].items()}} for k, v in subgroups.items()}


def chosen_method(cfg: Any, calibrator: Any) -> Any:
    """``--method auto``: the config with the family the selection chose, so that labels and JSON name it."""
    found = getattr(calibrator, "selection_", None)
    return cfg if found is None else dataclasses.replace(cfg, calibrator=found.best_name)


def _selection_json(calibrator: Any) -> dict[str, Any]:
    found = getattr(calibrator, "selection_", None)
    return {} if found is None else {"selection": found.to_dict()}


def _describe_calibrator(cal) -> str:
    if getattr(cal, "unfitted_reason_", None) is not None:
        return "not fitted: the model separates the validation split (see the test metrics)" + (
            ", T = 1" if hasattr(cal, "temperature_") else "")
    if hasattr(cal, "temperature_"):
        return f"temperature T = {cal.temperature_:.4f} ({cal.n_passes_} passes)"
    if hasattr(cal, "grad_norm_"):  # the L-BFGS families (vector, matrix, Dirichlet, beta, class-wise T)
        return (f"{type(cal).__name__} (validation NLL {cal.nll_before_:.4f} -> {cal.nll_after_:.4f}, "
                f"final gradient {cal.grad_norm_:.1e})")
    if hasattr(cal, "a_"):
        return f"Platt a = {cal.a_:.4f}, b = {cal.b_:.4f}"
    return "isotonic regression"


def finish(report: Report, run: RunDirectory, metrics: dict[str, Any], command: str) -> Path:
    report.heading("Reproduce")
    report.code(command)
    report.table(["package", "version"], [[k, v] for k, v in environment().items()])
    metrics = {"command": command, "environment": environment(), **metrics}
    run.write_json("metrics.json", metrics)
    report.write(run)
    return run.commit()


def run_train(cfg: TrainConfig) -> Path:
    with RunDirectory(cfg.out, force=cfg.force, inputs=(cfg.data,)) as run, figure_fonts():  # checked before any work
        df = read_table(cfg.data)
        report = Report(f"medloss train: {Path(cfg.data).name}")
        metrics = train_on_frame(df, cfg, run, report)
        return finish(report, run, metrics, cfg.command or command_line())


# ------------------------------------------------------------------------------------ calibrate
Predictions = tuple[np.ndarray, np.ndarray, str, "np.ndarray | None", "np.ndarray | None"]


def read_predictions(path: str, subgroup: str | None = None) -> Predictions:
    """Read logits or probabilities plus labels from CSV / Parquet / NPZ.

    Returns ``(values, labels, kind, split, subgroup values)`` with ``kind`` "logits" or "probs" and ``split`` the
    optional per-row "val" / "test" column. See docs/workflow.md for the formats.
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"file not found: {p}")
    read = _read_npz_predictions if p.suffix.lower() == ".npz" else _read_table_predictions
    values, labels, kind, split, sub = read(p, subgroup)
    values, labels = _checked_predictions(p, values, labels, kind)
    if sub is not None and sub.shape != labels.shape:
        raise UserError(f"{p}: --subgroup {subgroup!r} must hold one value per row ({labels.shape[0]})")
    return values, labels, kind, split, sub


def _read_npz_predictions(p: Path, subgroup: str | None) -> Predictions:
    """The arrays ``labels``, ``logits`` or ``probs`` and the optional ``split`` / subgroup of an NPZ file."""
    try:
        data = np.load(p, allow_pickle=False)
    except Exception as err:
        raise UserError(f"cannot read {p}: {type(err).__name__}: {err}") from None
    keys = set(data.files)
    if "labels" not in keys or not ({"logits", "probs"} & keys):
        raise UserError(f"{p} must hold arrays 'labels' and 'logits' or 'probs'; found {sorted(keys)}")
    if {"logits", "probs"} <= keys:
        raise UserError(f"{p} holds both 'logits' and 'probs': keep one of them")
    kind = "logits" if "logits" in keys else "probs"
    try:
        values = np.asarray(data[kind], dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{p}: the array '{kind}' must be numeric; got dtype {data[kind].dtype}") from None
    labels = np.asarray(data["labels"])
    if values.ndim not in (1, 2):
        raise UserError(f"{p}: '{kind}' must be [N] or [N, K]; got shape {list(values.shape)}")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.shape[0] != values.shape[0]:
        raise UserError(
            f"{p}: 'labels' must hold one label per row of '{kind}': '{kind}' has shape {list(values.shape)} "
            f"({values.shape[0]} rows) but 'labels' has shape {list(labels.shape)}"
        )
    sub = split = None
    if subgroup is not None:
        if subgroup not in keys:
            raise UserError(f"{p} has no array {subgroup!r} for --subgroup; found {sorted(keys)}")
        sub = np.asarray(data[subgroup]).astype(str)
    if "split" in keys:
        split = np.asarray(data["split"]).astype(str)
        if split.shape != labels.shape:
            raise UserError(f"{p}: 'split' must hold one entry per row ({labels.shape[0]}); got shape "
                            f"{list(split.shape)}")
    return values, labels, kind, split, sub


def _read_table_predictions(p: Path, subgroup: str | None) -> Predictions:
    """The ``label`` column, the ``logit_*`` / ``prob_*`` (or single ``logit`` / ``prob``) columns and the optional
    ``split`` / subgroup columns of a CSV / Parquet table."""
    df = read_table(p)
    cols = [str(c) for c in df.columns]
    df.columns = cols
    if "label" not in cols:
        raise UserError(f"{p} needs a 'label' column; found {', '.join(cols[:20])}")
    found = {k: _value_columns(cols, k) for k in ("logit", "prob")}
    if found["logit"] and found["prob"]:
        raise UserError(
            f"{p} has both logit and probability columns ({', '.join(found['logit'] + found['prob'])}): "
            "keep one kind"
        )
    kind = "logits" if found["logit"] else "probs" if found["prob"] else None
    if kind is None:
        raise UserError(
            f"{p} needs columns logit_0..logit_K-1 (or prob_0..), or a single 'logit' / 'prob' column; "
            f"found {', '.join(cols[:20])}"
        )
    try:
        values = np.asarray(df[found[kind[:-1]]].to_numpy(), dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{p}: the {kind} columns must be numeric") from None
    sub = split = None
    if subgroup is not None:
        if subgroup not in cols:
            raise UserError(f"{p} has no column {subgroup!r} for --subgroup; found {', '.join(cols[:20])}")
        if df[subgroup].isna().any():
            raise UserError(f"{p}: the --subgroup column {subgroup!r} has empty cells")
        sub = df[subgroup].astype(str).str.strip().to_numpy()
    if "split" in cols:
        split = df["split"].astype(str).str.strip().str.lower().to_numpy()
    return values, df["label"].to_numpy(), kind, split, sub


def _checked_predictions(p: Path, values: np.ndarray, labels: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (a single column as ``[N]``) and the labels as int64, after the checks every format shares: at
    least 2 rows, finite values, integer labels in ``[0, K)``, probabilities in ``[0, 1]`` whose rows sum to 1."""
    if values.shape[0] < 2:
        raise UserError(f"{p} has {values.shape[0]} row(s): calibration needs at least 2 (better: hundreds)")
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if not np.all(np.isfinite(values)):
        raise UserError(f"{p}: the {kind} contain NaN or Inf")
    labels = _integer_labels(p, labels)
    k = 2 if values.ndim == 1 else values.shape[1]
    if labels.min() < 0 or labels.max() >= k:
        raise UserError(
            f"{p}: labels must lie in [0, {k - 1}] for {k}-class predictions; found {labels.min()}..{labels.max()}"
        )
    if kind == "probs":
        if values.min() < 0 or values.max() > 1:
            raise UserError(f"{p}: probabilities must lie in [0, 1]")
        if values.ndim == 2 and np.abs(values.sum(1) - 1).max() > 1e-3:
            raise UserError(f"{p}: probability rows must sum to 1")
    return values, labels


def _integer_labels(p: Path, labels: np.ndarray) -> np.ndarray:
    """Labels as int64, or a UserError unless every one is a finite whole number."""
    try:
        labels_f = np.asarray(labels, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{p}: labels must be integers 0..K-1") from None
    if not np.all(np.isfinite(labels_f)) or not np.all(labels_f == np.round(labels_f)):
        raise UserError(f"{p}: labels must be integers 0..K-1")
    return labels_f.astype(np.int64)


def _value_columns(cols: list[str], kind: str) -> list[str]:
    """The value columns of ``kind`` ("logit" or "prob"): ``kind_0..kind_{K-1}`` in order, or the
    single column ``kind``; a gap in the numbering is an error naming the columns found."""
    numbered = sorted((c for c in cols if c.startswith(f"{kind}_") and c[len(kind) + 1:].isdigit()),
                      key=lambda c: int(c[len(kind) + 1:]))
    if numbered:
        if kind in cols:
            raise UserError(f"both a '{kind}' column and {', '.join(numbered)}: keep one layout")
        expected = [f"{kind}_{i}" for i in range(int(numbered[-1][len(kind) + 1:]) + 1)]
        if numbered != expected:
            missing = [c for c in expected if c not in numbered]
            raise UserError(
                f"columns {kind}_0..{kind}_K-1 must all be present: found {', '.join(numbered)}; "
                f"missing {', '.join(missing)}"
            )
        if len(numbered) == 1:
            raise UserError(f"a single column {numbered[0]} is not a K-class output: name it '{kind}' for one "
                            f"binary {kind}, or add {kind}_1..")
        return numbered
    return [kind] if kind in cols else []


def _to_logits(values: np.ndarray, kind: str) -> torch.Tensor:
    v = torch.from_numpy(np.array(values))  # a copy: pandas may hand over a read-only array
    if kind == "logits":
        return v
    eps = 1e-12
    return torch.logit(v, eps=eps) if v.ndim == 1 else torch.log(v.clamp_min(eps))


@dataclass
class CalibrateConfig:
    predictions: str
    out: str
    val: str | None = None
    calibrator: str = "temperature"
    n_boot: int = 1000
    n_bins: int = 15
    seed: int = 0
    force: bool = False
    command: str = ""
    subgroup: str | None = None
    conformal: float | None = None
    conformal_method: str = "aps"
    progress: bool = True


def run_calibrate(cfg: CalibrateConfig) -> Path:
    with RunDirectory(cfg.out, force=cfg.force, inputs=(cfg.predictions, cfg.val)) as run, figure_fonts():
        return _calibrate_into(run, cfg)  # the folder is checked before any work


def _fit_and_evaluation_rows(cfg: CalibrateConfig, values: np.ndarray, labels: np.ndarray, kind: str,
                             split: np.ndarray | None, notes: list[str]):
    """``(fit logits, fit labels, evaluation logits, evaluation labels, evaluation rows of the file)``: the
    calibrator fits on ``--val``, on the rows marked ``split = val``, or on a stratified, seeded half (a note says
    which)."""
    if cfg.val is not None:
        v_values, v_labels, v_kind, _, _ = read_predictions(cfg.val)
        if (v_values.ndim, v_values.shape[1:]) != (values.ndim, values.shape[1:]):
            raise UserError("--val and --predictions must hold the same number of classes")
        notes.append(f"calibrator fitted on {cfg.val}, evaluated on {cfg.predictions}")
        return _to_logits(v_values, v_kind), v_labels, _to_logits(values, kind), labels, np.arange(len(labels))
    z = _to_logits(values, kind)
    if split is not None:
        if not set(np.unique(split)) <= {"val", "test"} or not {"val", "test"} <= set(np.unique(split)):
            raise UserError("the 'split' column must hold 'val' and 'test' rows")
        notes.append("calibrator fitted on the rows with split = val, evaluated on split = test")
        fit, test = split == "val", split == "test"
        return z[torch.from_numpy(fit)], labels[fit], z[torch.from_numpy(test)], labels[test], np.flatnonzero(test)
    idx_fit, idx_test = _stratified_halves(labels, cfg.seed)
    notes.append("no --val file and no split column: the rows were split 50/50 (stratified, seeded) into a "
                 "calibration half and an evaluation half; pass --val to fit on your own validation split")
    return z[idx_fit], labels[idx_fit], z[idx_test], labels[idx_test], idx_test


def _stratified_halves(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two halves of the row indices, stratified by label where every present class has 2 rows, seeded."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(labels)
    strat = labels if counts[counts > 0].min() >= 2 else None
    return train_test_split(np.arange(len(labels)), test_size=0.5, stratify=strat, random_state=seed)


def _conformal_rows(fit_x: torch.Tensor, fit_y: np.ndarray, seed: int, notes: list[str]):
    """The conformal quantile needs rows the calibrator did not see: the fitting rows halved, ``(fit logits, fit
    labels, conformal logits, conformal labels)``."""
    idx_cal, idx_conf = _stratified_halves(fit_y, seed)
    notes.append(f"--conformal: the calibrator was fitted on half of those rows ({len(idx_cal)}), the conformal "
                 f"quantile computed on the other half ({len(idx_conf)})")
    return (fit_x[torch.from_numpy(idx_cal)], fit_y[idx_cal], fit_x[torch.from_numpy(idx_conf)], fit_y[idx_conf])


def _calibrate_figures(report: Report, p_before: torch.Tensor, p_after: torch.Tensor, test_y: np.ndarray, task: str,
                       cfg: CalibrateConfig, class_names: list[str], after: dict) -> None:
    """The reliability diagram, the clinical calibration plot and the confusion matrix of the evaluation rows."""
    report.heading("Figures")
    report.figure("reliability.png", plot_reliability_diagram(
        _reliability_curves(p_before, p_after, test_y, cfg.calibrator), n_bins=cfg.n_bins,
        title="Reliability on the evaluation rows"), "Reliability diagram before and after calibration.")
    _clinical_figure(report, "clinical_calibration.png", p_before, p_after, test_y, task, cfg.calibrator,
                     class_names, n_boot=cfg.n_boot, seed=cfg.seed, title="Calibration on the evaluation rows")
    cm = np.asarray(after["classification"]["confusion_matrix"])
    report.figure("confusion_matrix.png", confusion_figure(cm, class_names, "Confusion matrix"),
                  "Confusion matrix on the evaluation rows (rows: truth).")


def _write_calibrated_predictions(path: Path, p_after: torch.Tensor, test_y: np.ndarray,
                                  sets: torch.Tensor | None) -> None:
    """``label``, ``prob`` (binary) or ``prob_0..prob_{K-1}``, and the conformal ``prediction_set`` if any."""
    probs = p_after.numpy()
    columns = [f"prob_{i}" for i in range(probs.shape[1])] if probs.ndim == 2 else ["prob"]
    out = pd.DataFrame(probs if probs.ndim == 2 else probs[:, None], columns=columns)
    out.insert(0, "label", test_y)
    if sets is not None:
        out["prediction_set"] = ["|".join(str(c) for c in np.flatnonzero(row)) for row in sets.numpy()]
    out.to_csv(path, index=False)


def _calibrate_into(run: RunDirectory, cfg: CalibrateConfig) -> Path:
    values, labels, kind, split, sub = read_predictions(cfg.predictions, cfg.subgroup)
    if cfg.subgroup is not None and values.ndim == 2 and values.shape[1] > 2:
        raise UserError("--subgroup reports the clinical calibration of binary predictions (one value, or two "
                        f"columns); these have {values.shape[1]} classes")
    notes: list[str] = []
    fit_x, fit_y, test_x, test_y, test_rows = _fit_and_evaluation_rows(cfg, values, labels, kind, split, notes)
    k = 2 if values.ndim == 1 else values.shape[1]
    class_names = [str(i) for i in range(k)]
    conformal_x = conformal_y = None
    if cfg.conformal is not None:
        fit_x, fit_y, conformal_x, conformal_y = _conformal_rows(fit_x, fit_y, cfg.seed, notes)
    calibrator = _fit_on_validation(cfg.calibrator, fit_x, fit_y, notes, seed=cfg.seed)
    cfg = chosen_method(cfg, calibrator)
    p_before, p_after = probabilities(test_x), calibrator.predict_proba(test_x)
    conformal, sets = None, None
    if cfg.conformal is not None:
        try:
            conformal, sets = conformal_report(cfg.conformal_method, cfg.conformal,
                                               calibrator.predict_proba(conformal_x), conformal_y, p_after, test_y)
        except ValueError as err:
            raise UserError(f"--conformal: {err}") from None
    task = "binary" if values.ndim == 1 else "multiclass"  # two logit columns: a 2-class softmax
    before, after, check = _evaluate_pair(p_before, p_after, test_y, class_names, task, cfg, calibrator,
                                          [f"row {i}" for i in test_rows])
    report = Report(f"medloss calibrate: {Path(cfg.predictions).name}")
    report.heading("Input")
    report.facts([["predictions", cfg.predictions], ["values", kind], ["classes", k],
                            ["rows used to fit / to evaluate", f"{len(fit_y)} / {len(test_y)}"],
                            ["calibrator", _describe_calibrator(calibrator)]])
    for n in notes:
        report.paragraph(n, note=True)
    add_selection(report, calibrator)
    add_evaluation(report, before, after, class_names, "multiclass", cfg.calibrator, check=check,
                   n_bins=cfg.n_bins)
    add_clinical(report, before, after, class_names, cfg.calibrator)
    subgroups = None
    if sub is not None:
        p_sub = p_after if p_after.ndim == 1 else p_after[:, 1]
        subgroups = clinical_calibration_by_subgroup(p_sub, test_y, sub[test_rows], n_boot=cfg.n_boot,
                                                     seed=cfg.seed)
        add_subgroups(report, subgroups, cfg.subgroup, cfg.calibrator)
    if conformal is not None:
        add_conformal(report, conformal, class_names)
    _calibrate_figures(report, p_before, p_after, test_y, task, cfg, class_names, after)
    calibrator.save(run.path("calibrator.json"))
    _write_calibrated_predictions(run.path("calibrated_predictions.csv"), p_after, test_y, sets)
    metrics = {"predictions": cfg.predictions, "val": cfg.val, "kind": kind, "notes": notes,
               "calibrator": {"method": cfg.calibrator, **calibrator.to_dict(), **_selection_json(calibrator)},
               "uncalibrated": before, "calibrated": after, "calibration_check": check,
               **({"subgroups": _subgroups_json(subgroups)} if subgroups is not None else {}),
               **({"conformal": conformal} if conformal is not None else {})}
    return finish(report, run, metrics, cfg.command or command_line())


__all__ = ["CalibrateConfig", "TrainConfig", "esc", "run_calibrate", "run_train", "train_on_frame"]
