"""Reading user files and writing run directories atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._errors import UserError

__all__ = ["UserError"]  # re-exported: the workflow's modules raise it from here


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """CSV (``.csv``, ``.tsv``, ``.txt``) or Parquet (``.parquet``, ``.pq``) into a DataFrame."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"file not found: {p}")
    if p.is_dir():
        raise UserError(f"expected a file, got a directory: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(p)
        elif suffix in (".csv", ".tsv", ".txt"):
            df = pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",")
        else:
            raise UserError(f"unsupported file type {suffix!r} for {p}: use CSV or Parquet")
    except UserError:
        raise
    except pd.errors.EmptyDataError:
        raise UserError(f"{p} is empty") from None
    except Exception as err:  # parser errors of every kind become one line
        raise UserError(f"cannot read {p}: {type(err).__name__}: {str(err).splitlines()[0]}") from None
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise UserError(f"{p} has no data rows")
    return df


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def current_umask() -> int:
    """The process's umask (read by setting and restoring it: POSIX has no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class RunDirectory:
    """Build a run's outputs in a temporary folder next to ``out`` and move it into place at the
    end, so an interrupted or failed run never leaves half-written output. An existing ``out``
    is only replaced with ``force=True``."""

    def __init__(self, out: str | os.PathLike, *, force: bool = False) -> None:
        self.out = Path(out).resolve()
        self.force = force
        if self.out.exists() and not force:
            raise UserError(f"output directory {self.out} already exists: pass --force to overwrite it")
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"output path {self.out} exists and is not a directory")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", dir=self.out.parent))
        self.tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes it 0700; the run folder follows the umask

    def path(self, name: str) -> Path:
        return self.tmp / name

    def write_json(self, name: str, data: Any) -> Path:
        target = self.path(name)
        target.write_text(json.dumps(to_jsonable(data), indent=2, allow_nan=False))
        return target

    def commit(self) -> Path:
        """Move the finished run into place. Without ``force`` a run that appeared at ``out`` while
        this one was working (another process) is never replaced: ``rename`` fails on a non-empty
        directory, atomically, so there is no window between a check and the move."""
        if self.force and self.out.exists():
            shutil.rmtree(self.out)
        try:
            os.rename(self.tmp, self.out)
        except OSError:
            if not self.out.exists():
                raise
            self.abort()
            raise UserError(
                f"output directory {self.out} appeared while this run was working (another run?); it was not "
                "replaced and this run's outputs were discarded: pass --force to replace it"
            ) from None
        return self.out

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
