"""Tabular data: target handling, preprocessing fitted on the training split only, stratified splits."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from .._validation import plain
from .io import UserError

TASKS = ("binary", "multiclass", "ordinal")


@dataclass
class Target:
    """Integer labels ``0..K-1`` and what they mean."""

    y: np.ndarray
    class_names: list[str]
    task: str
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _check_no_infinity(column: str, values: pd.Series) -> None:
    """An infinite feature value (``inf`` in a CSV) is an error naming the column and the first row;
    missing values are fine (imputed)."""
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    infinite = np.isinf(numbers.to_numpy())
    if infinite.any():
        first = values.index[np.argmax(infinite)]
        raise UserError(
            f"feature column {column!r} holds {int(infinite.sum())} infinite value(s) (first in data row {first + 1}): "
            "replace them with a number or leave the cell empty (missing values are imputed)"
        )


def _is_integer_valued(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def prepare_target(
    df: pd.DataFrame,
    column: str,
    task: str,
    *,
    binarize: str | None = None,
    num_classes: int | None = None,
    grades: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, Target]:
    """Validate the target column and turn it into integer labels; rows without a target are dropped.
    Ordinal grades: see :func:`ordinal_target`."""
    if column not in df.columns:
        shown = ", ".join(map(str, list(df.columns)[:20]))
        raise UserError(f"target column {column!r} not found; the file has columns: {shown}")
    if task not in TASKS:
        raise UserError(f"--task must be one of {', '.join(TASKS)}; got {task!r}")
    notes = []
    missing = df[column].isna()
    if missing.all():
        raise UserError(f"target column {column!r} has no values (all missing)")
    if missing.any():
        notes.append(f"dropped {int(missing.sum())} row(s) with a missing target")
        df = df.loc[~missing].reset_index(drop=True)
    raw = df[column]
    if raw.nunique() < 2:
        raise UserError(f"target column {column!r} is constant ({raw.iloc[0]!r}): nothing to learn")

    if grades is not None and task != "ordinal":
        raise UserError("--grades names the grades of --task ordinal")
    if binarize is not None:
        if task != "binary":
            raise UserError("--binarize only applies to --task binary")
        return df, _binarized_target(raw, column, binarize, notes)
    if task == "ordinal":
        return df, ordinal_target(raw, column, num_classes=num_classes, grades=grades, notes=notes)
    y, names = _class_labels(raw, num_classes)
    if task == "binary" and len(names) != 2:
        raise UserError(f"--task binary needs exactly 2 target values; {column!r} has {len(names)} "
                        "(use --binarize median|VALUE for a continuous target, or --task multiclass)")
    return df, Target(y, names, task, notes)


def _binarized_target(raw: pd.Series, column: str, binarize: str, notes: list[str]) -> Target:
    """``column > threshold`` as the positive class, the threshold the median or a number."""
    values = pd.to_numeric(raw, errors="coerce")
    if values.isna().any():
        bad = raw[values.isna()].iloc[0]
        raise UserError(f"--binarize needs a numeric target; column {column!r} holds {plain(bad)!r}")
    if binarize == "median":
        threshold = float(values.median())
    else:
        try:
            threshold = float(binarize)
        except ValueError:
            raise UserError(f"--binarize must be 'median' or a number; got {binarize!r}") from None
    y = (values.to_numpy() > threshold).astype(np.int64)
    if y.min() == y.max():
        raise UserError(f"--binarize {binarize} puts every row on one side of {threshold:g}")
    notes.append(f"target binarized: {column} > {threshold:g} is the positive class")
    return Target(y, [f"{column} <= {threshold:g}", f"{column} > {threshold:g}"], "binary", notes)


def _class_labels(raw: pd.Series, num_classes: int | None) -> tuple[np.ndarray, list[str]]:
    """Binary / multiclass labels ``0..K-1`` and the class names: integers keep their order (``0..num_classes-1``
    when given), anything else is sorted as text."""
    numeric = pd.to_numeric(raw, errors="coerce")
    if not numeric.isna().any() and _is_integer_valued(numeric.to_numpy(dtype=np.float64)):
        labels = numeric.astype(np.int64).to_numpy()
        if num_classes is not None:
            if labels.min() < 0 or labels.max() >= num_classes:
                raise UserError(f"labels must lie in [0, {num_classes - 1}] (--num-classes {num_classes}); "
                                f"found {int(labels.min())}..{int(labels.max())}")
            classes = list(range(num_classes))
        else:
            classes = sorted(set(labels.tolist()))
        mapping = {c: i for i, c in enumerate(classes)}
        return np.array([mapping[v] for v in labels], dtype=np.int64), [str(c) for c in classes]
    labels = raw.astype(str).str.strip()
    names = sorted(labels.unique())
    mapping = {c: i for i, c in enumerate(names)}
    return labels.map(mapping).to_numpy(dtype=np.int64), names


def ordinal_target(raw: pd.Series, column: str, *, num_classes: int | None = None,
                   grades: Sequence[str] | None = None, notes: list[str] | None = None) -> Target:
    """Ordered grades as labels ``0..K-1``.

    ``grades`` names them in order (``--grades 1,2,3,4`` or ``mild,moderate,severe``): every value must
    be one of them, and a named grade that never occurs keeps its place. ``num_classes`` K declares the
    grades ``0..K-1``. Otherwise the grades are the sorted distinct integer values of the column (1-based
    grades train a model of their own K classes, not K + 1 with an empty grade 0), and an integer missing
    between two observed grades is a warning: it is left out, unless ``--grades`` names it.
    """
    notes = [] if notes is None else notes
    if grades is not None and num_classes is not None:
        raise UserError("pass either --grades (the grades by name) or --num-classes (grades 0..K-1), not both")
    if grades is not None:
        return _named_grades(raw, column, grades, notes)
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(values).any() or not _is_integer_valued(values):
        bad = raw[~np.isfinite(values) | (values != np.round(values))].iloc[0]
        raise UserError(f"ordinal target {column!r} must hold integer grades (or pass --grades to name them in "
                        f"order); found {plain(bad)!r}")
    labels = values.astype(np.int64)
    if num_classes is not None:
        k = int(num_classes)
        if labels.min() < 0 or labels.max() >= k:
            raise UserError(f"ordinal grades must lie in [0, {k - 1}] (--num-classes {k}); found "
                            f"{int(labels.min())}..{int(labels.max())}")
        return Target(labels, [f"grade {g}" for g in range(k)], "ordinal", notes)
    return _observed_grades(labels, column, notes)


def _named_grades(raw: pd.Series, column: str, grades: Sequence[str], notes: list[str]) -> Target:
    """Grades named in order by ``--grades``: every value must be one of them (2.0 in a CSV is grade "2")."""
    names = [str(g).strip() for g in grades]
    if len(names) < 2 or len(set(names)) != len(names) or "" in names:
        raise UserError(f"--grades must name at least 2 distinct grades in order; got {','.join(names)!r}")
    text = raw.astype(str).str.strip()
    numeric = pd.to_numeric(raw, errors="coerce")
    if numeric.notna().all() and _is_integer_valued(numeric.to_numpy(dtype=np.float64)):
        text = numeric.astype(np.int64).astype(str)
    mapping = {g: i for i, g in enumerate(names)}
    unknown = sorted(set(text) - set(names))
    if unknown:
        raise UserError(f"target {column!r} holds value(s) {', '.join(map(repr, unknown[:5]))} that --grades "
                        f"({','.join(names)}) does not name")
    return Target(text.map(mapping).to_numpy(dtype=np.int64), [f"grade {g}" for g in names], "ordinal", notes)


def _observed_grades(labels: np.ndarray, column: str, notes: list[str]) -> Target:
    """The sorted distinct integer grades as ``0..K-1``; an integer missing between two of them is a warning."""
    observed = sorted(set(labels.tolist()))
    gaps = sorted(set(range(observed[0], observed[-1] + 1)) - set(observed))
    if gaps:
        message = (f"ordinal target {column!r}: grade(s) {', '.join(map(str, gaps))} between the observed grades "
                   f"{observed[0]}..{observed[-1]} never occur and are left out; if they exist, name every grade "
                   f"with --grades {','.join(map(str, range(observed[0], observed[-1] + 1)))}")
        warnings.warn(message, UserWarning, stacklevel=3)
        notes.append(message)
    index = {g: i for i, g in enumerate(observed)}
    return Target(np.array([index[v] for v in labels.tolist()], dtype=np.int64), [f"grade {g}" for g in observed],
                  "ordinal", notes)


#: column names that say "identifier": id, ID, patient_id, case-id, id_number, uuid, mrn, ...
_ID_NAME = re.compile(r"^(id|uuid|guid|mrn|index)$|(^|[_\s.-])(id|uuid)$|^(id|uuid)([_\s.-])", re.IGNORECASE)


def identifier_like(df: pd.DataFrame, column: str) -> str | None:
    """Why ``column`` looks like a row identifier rather than a feature, or None: named like one, text
    unique per row, or integers numbering the rows (unique and consecutive)."""
    if _ID_NAME.search(str(column)):
        return "named like an identifier"
    values = df[column].dropna()
    if len(values) < 20 or values.nunique() != len(df):
        return None
    numeric = pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)
    parsed = values if numeric else pd.to_numeric(values.astype(str).str.strip(), errors="coerce")
    if parsed.notna().mean() <= 0.5:  # text (a mostly numeric column with garbage is reported as such later)
        return "text unique per row"
    numbers = parsed.to_numpy(dtype=np.float64)
    if _is_integer_valued(numbers) and numbers.max() - numbers.min() + 1 == len(df):
        return "integers numbering the rows"
    return None


@dataclass
class FeatureSelection:
    columns: list[str]
    id_column: str | None
    notes: list[str]


def _check_named_columns(columns: list[str], target: str, features: Sequence[str] | None, exclude: Sequence[str],
                         id_column: str | None) -> None:
    """Every column ``--features`` / ``--exclude`` / ``--id-column`` names exists and is not the target."""
    for flag, names in (("--features", features or ()), ("--exclude", exclude),
                        ("--id-column", [id_column] if id_column else [])):
        absent = [n for n in names if n not in columns]
        if absent:
            raise UserError(f"{flag}: no column {', '.join(map(repr, absent))}; the file has {', '.join(columns[:20])}")
        if target in names:
            raise UserError(f"{flag} names the target column {target!r}")


def select_features(df: pd.DataFrame, target: str, *, features: Sequence[str] | None = None,
                    exclude: Sequence[str] = (), id_column: str | None = None) -> FeatureSelection:
    """The model's input columns: ``features`` as given, else every column but the target, ``exclude``,
    ``id_column`` and the columns that look like identifiers (:func:`identifier_like`; each said in a
    note). The id column is the one named, else the first identifier-like column, carried to predictions."""
    columns = [str(c) for c in df.columns]
    _check_named_columns(columns, target, features, exclude, id_column)
    notes: list[str] = []
    if features is not None:
        chosen = list(dict.fromkeys(features))
        clash = [c for c in chosen if c in exclude or c == id_column]
        if clash:
            raise UserError(f"--features and --exclude / --id-column both name {', '.join(map(repr, clash))}")
        return FeatureSelection(chosen, id_column, notes)
    chosen, ids = [], []
    for col in columns:
        if col == target or col in exclude:
            continue
        if col == id_column:
            ids.append(col)
            continue
        reason = identifier_like(df, col)
        if reason is not None:
            ids.append(col)
            notes.append(f"column {col!r} is not used as a feature ({reason}); pass --features to choose the "
                         "features yourself")
            continue
        chosen.append(col)
    if not chosen:
        raise UserError("no feature columns besides the target" + (" and the identifier-like columns "
                        f"({', '.join(map(repr, ids))}): pass --features" if ids else ""))
    return FeatureSelection(chosen, id_column or (ids[0] if ids else None), notes)


@dataclass
class Preprocessor:
    """Impute (mean / mode), normalise category spellings, one-hot encode and standardise.
    Every statistic is fitted on the training split only."""

    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)
    levels: dict[str, list[str]] = field(default_factory=dict)

    @staticmethod
    def classify_columns(df: pd.DataFrame) -> tuple[list[str], list[str]]:
        numeric, categorical = [], []
        for col in df.columns:
            series = df[col]
            if series.isna().all():
                raise UserError(f"feature column {col!r} has no values (all missing): drop it")
            if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
                _check_no_infinity(col, series)
                numeric.append(col)
                continue
            present = series.dropna().astype(str).str.strip()
            parsed = pd.to_numeric(present, errors="coerce")
            if parsed.notna().all():  # numbers stored as text
                _check_no_infinity(col, parsed)
                numeric.append(col)
            elif parsed.notna().mean() > 0.5:  # a numeric column with some garbage in it
                bad = present[parsed.isna()].iloc[0]
                raise UserError(f"feature column {col!r} is numeric but holds non-numeric value {plain(bad)!r}")
            else:
                categorical.append(col)
        return numeric, categorical

    @staticmethod
    def normalise(series: pd.Series) -> pd.Series:
        return series.astype("string").str.strip().str.lower().str.replace(r"\s+", " ", regex=True)

    def fit(self, df: pd.DataFrame, *, schema: pd.DataFrame | None = None) -> Preprocessor:
        """Fit on the training rows ``df``; column types are decided on ``schema`` (all rows, so
        that garbage anywhere in the file is reported) when given."""
        self.numeric, self.categorical = self.classify_columns(df if schema is None else schema)
        for col in self.numeric:
            values = pd.to_numeric(df[col], errors="coerce").astype(np.float64)
            if values.isna().all():
                raise UserError(f"feature column {col!r} has no values in the training split")
            mean = float(values.mean())
            std = float(values.fillna(mean).std(ddof=0))
            self.means[col], self.stds[col] = mean, std if std > 0 else 1.0
        for col in self.categorical:
            values = self.normalise(df[col])
            self.modes[col] = str(values.mode(dropna=True).iloc[0])
            self.levels[col] = sorted(values.dropna().unique().tolist())
        if not self.numeric and not self.categorical:
            raise UserError("no feature columns besides the target")
        return self

    def feature_names(self) -> list[str]:
        names = list(self.numeric)
        for col in self.categorical:
            names += [f"{col}={level}" for level in self.levels[col]]
        return names

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        parts = []
        for col in self.numeric:
            values = pd.to_numeric(df[col], errors="coerce").astype(np.float64).fillna(self.means[col])
            parts.append(((values - self.means[col]) / self.stds[col]).to_numpy()[:, None])
        for col in self.categorical:
            values = self.normalise(df[col]).fillna(self.modes[col])
            parts.append(np.stack([(values == level).to_numpy(dtype=np.float64) for level in self.levels[col]], 1))
        return np.concatenate(parts, 1).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("numeric", "categorical", "means", "stds", "modes", "levels")}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Preprocessor:
        """The fitted preprocessing saved by :meth:`to_dict` (a run's ``metrics.json``)."""
        return cls(**{k: state[k] for k in ("numeric", "categorical", "means", "stds", "modes", "levels")})


@dataclass
class Splits:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def stratified_splits(y: np.ndarray, *, val: float = 0.2, test: float = 0.2, seed: int = 0) -> Splits:
    """Row indices of stratified train / validation / test splits (60 / 20 / 20 by default)."""
    counts = np.bincount(y)
    rare = [int(c) for c in np.nonzero((counts > 0) & (counts < 3))[0]]
    if rare:
        raise UserError(f"class(es) {rare} have fewer than 3 samples: a stratified train / validation / test "
                        "split needs at least 3 per class")
    idx = np.arange(len(y))
    rest, test_idx = train_test_split(idx, test_size=test, stratify=y, random_state=seed)
    train_idx, val_idx = train_test_split(rest, test_size=val / (1 - test), stratify=y[rest], random_state=seed)
    return Splits(np.sort(train_idx), np.sort(val_idx), np.sort(test_idx))
