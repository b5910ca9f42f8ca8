"""``medloss predict``: apply a trained run (its preprocessing, model and calibrator) to new rows."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._validation import plain
from ..calibration import load_calibrator
from .data import Preprocessor
from .evaluate import probabilities, why_uncalibrated
from .io import UserError, check_output, current_umask, read_table
from .train import MLP, build_loss, predict_log_probabilities

RUN_FILES = ("metrics.json", "model.pt", "calibrator.json")


PROBABILITIES = ("auto", "calibrated", "uncalibrated")


@dataclass
class PredictConfig:
    run: str
    data: str
    out: str
    id: str | None = None
    force: bool = False
    #: "auto": what the run's report recommends (its calibration check on the test split)
    probabilities: str = "auto"
    #: also write the conformal prediction sets the run fitted (``medloss train --conformal``)
    sets: bool = False


@dataclass
class PredictResult:
    path: Path
    probabilities: str  # "calibrated" or "uncalibrated"
    reason: str  # why those


def choose_probabilities(meta: dict[str, Any], requested: str) -> tuple[str, str]:
    """Which probabilities to write, and why: ``requested``, or with "auto" the run's recommendation."""
    if requested not in PROBABILITIES:
        raise UserError(f"--probabilities must be one of {', '.join(PROBABILITIES)}; got {requested!r}")
    if requested != "auto":
        return requested, "as requested (--probabilities)"
    check = meta.get("calibration_check") or {}
    if check.get("recommended") == "uncalibrated":
        return "uncalibrated", f"as the run's report recommends: {why_uncalibrated(check)}"
    return "calibrated", "as the run's report recommends"


def conformal_sets(meta: dict[str, Any], calibrated: torch.Tensor) -> torch.Tensor:
    """The prediction sets of the run's conformal predictor (fitted on calibrated probabilities)."""
    from ..calibration import ConformalClassifier, ConformalOrdinal

    conformal = meta.get("conformal")
    if not conformal:
        raise UserError("--sets: this run fitted no conformal sets (train it with --conformal ALPHA)")
    method, alpha = conformal["method"], conformal["alpha"]
    cp = ConformalOrdinal(alpha) if method == "ordinal" else ConformalClassifier(alpha, method)
    cp.quantile_ = torch.tensor(float(conformal["quantile"]), dtype=torch.float64)
    cp.n_classes_ = 2 if calibrated.ndim == 1 else calibrated.shape[1]
    return cp.predict_sets(calibrated)


def load_run(run: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """The ``metrics.json`` of a ``medloss train`` run folder, checked to hold what prediction needs."""
    folder = Path(run)
    if not folder.is_dir():
        raise UserError(f"run folder not found: {folder}")
    missing = [name for name in RUN_FILES if not (folder / name).exists()]
    if missing:
        raise UserError(f"{folder} is not a `medloss train` run folder: {', '.join(missing)} missing")
    meta = json.loads((folder / "metrics.json").read_text())
    if "model" not in meta or "preprocessing" not in meta:
        raise UserError(f"{folder} was written by an older medloss (no model description in metrics.json): "
                        "train it again with this version")
    return meta, folder


def _check_features(df: pd.DataFrame, pre: Preprocessor) -> pd.DataFrame:
    """The training feature columns of ``df``, validated as ``train`` validates them: every column
    present, numeric columns holding numbers (missing values are fine: they are imputed)."""
    columns = pre.numeric + pre.categorical
    absent = [c for c in columns if c not in df.columns]
    if absent:
        found = ", ".join(str(c) for c in df.columns[:20])
        raise UserError(f"the data lacks the training feature column(s) {', '.join(map(repr, absent))}; found {found}")
    for col in pre.numeric:
        raw = df[col]
        present = raw.dropna()
        numeric = pd.api.types.is_numeric_dtype(present) or pd.api.types.is_bool_dtype(present)
        values = present if numeric else pd.to_numeric(present.astype(str).str.strip(), errors="coerce")
        if values.isna().any():
            bad = present[values.isna()].iloc[0]
            raise UserError(f"feature column {col!r} was numeric in training but holds non-numeric value "
                            f"{plain(bad)!r}")
        infinite = np.isinf(values.to_numpy(dtype=np.float64))
        if infinite.any():
            first = values.index[np.argmax(infinite)]
            raise UserError(f"feature column {col!r} holds {int(infinite.sum())} infinite value(s) (first in data "
                            f"row {first + 1}): replace them with a number or leave the cell empty")
    return df[columns]


def _write_csv(frame: pd.DataFrame, out: Path, force: bool) -> None:
    """Write ``out`` atomically: a temporary file in the same folder, then a rename that never
    replaces an existing file unless ``force`` (a file that appeared meanwhile is kept)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            frame.to_csv(fh, index=False)
        os.chmod(tmp, 0o666 & ~current_umask())
        if force:
            os.replace(tmp, out)
        else:
            try:
                os.link(tmp, out)  # fails if `out` exists: no window between a check and the move
            except FileExistsError:
                raise UserError(f"{out} already exists: pass --force to overwrite it") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def run_predict(cfg: PredictConfig) -> PredictResult:
    """Apply a ``medloss train`` run to ``cfg.data`` and write ``cfg.out``: the probabilities the run
    recommends (or those ``cfg.probabilities`` names), the predicted class and optionally the conformal sets."""
    run_files = tuple(Path(cfg.run) / name for name in RUN_FILES)
    check_output(cfg.out, force=cfg.force, inputs=(cfg.data, *run_files), kind="file")  # before any work
    out = Path(cfg.out)
    meta, folder = load_run(cfg.run)
    which, reason = choose_probabilities(meta, cfg.probabilities)
    df = read_table(cfg.data)
    pre = Preprocessor.from_dict(meta["preprocessing"])
    id_column = cfg.id
    if id_column is not None and id_column not in df.columns:
        raise UserError(f"--id column {id_column!r} not found; found {', '.join(map(str, df.columns[:20]))}")
    features = pre.numeric + pre.categorical
    for candidate in (meta.get("id_column"), "id"):  # the run's id column, else a column named id
        if id_column is None and candidate is not None and candidate in df.columns and candidate not in features:
            id_column = candidate
    x = pre.transform(_check_features(df, pre))

    model_meta = meta["model"]
    class_names = [str(c) for c in meta["class_names"]]
    k = len(class_names)
    setup = build_loss(model_meta["loss"], model_meta["task"], k, np.arange(k), model_meta.get("class_weights"))
    model = MLP(x.shape[1], setup.n_out, tuple(model_meta["hidden"]), dropout=model_meta["dropout"],
                batch_norm=model_meta["batch_norm"])
    if x.shape[1] != model_meta["n_features"]:  # pragma: no cover - the preprocessing fixes the width
        raise UserError(f"the preprocessed data has {x.shape[1]} features, the model {model_meta['n_features']}")
    state = torch.load(folder / "model.pt", weights_only=True)
    model.load_state_dict(state["model"])
    setup.loss.load_state_dict(state["loss"])
    model.eval()
    logits = predict_log_probabilities(setup, model, x)
    try:
        calibrator = load_calibrator(folder / "calibrator.json")
    except ValueError as err:  # a corrupt or edited file: one line naming the field
        raise UserError(str(err)) from None
    calibrated = calibrator.predict_proba(logits).double()
    probs = calibrated if which == "calibrated" else probabilities(logits).double()
    if probs.ndim == 1:  # binary: P(positive), the second class name
        probs = torch.stack([1.0 - probs, probs], 1)
    table = pd.DataFrame(probs.numpy(), columns=[f"prob_{name}" for name in class_names])
    table["predicted"] = [class_names[i] for i in probs.argmax(1).tolist()]
    if cfg.sets:
        sets = conformal_sets(meta, calibrated)
        table["prediction_set"] = ["|".join(class_names[i] for i in np.flatnonzero(row)) for row in sets.numpy()]
    if id_column is not None:
        table.insert(0, id_column, df[id_column].to_numpy())
    _write_csv(table, out, cfg.force)
    return PredictResult(out, which, reason)


__all__ = ["PredictConfig", "PredictResult", "choose_probabilities", "load_run", "run_predict"]
