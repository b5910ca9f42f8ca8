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


#: the file every run folder medloss writes holds: ``--force`` replaces only a folder that has it
RUN_MARKER = ".medloss-run"


def _inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies below it (both resolved)."""
    return path == folder or folder in path.parents


def check_output(out: str | os.PathLike, *, force: bool, inputs: tuple[str | os.PathLike | None, ...] = (),
                 kind: str = "folder") -> Path:
    """Refuse an ``--out`` that would destroy what medloss did not write, before any work is done.

    Whatever ``force`` says, ``--out`` may not be the current folder or one of its parents, nor hold
    (or be) an input file. An existing ``--out`` needs ``force``, and then it must be something
    medloss wrote: a run folder with its marker file and no file the run did not write, or (``kind``
    "file") a predictions CSV. Returns ``out`` resolved.
    """
    path = Path(out).resolve()
    cwd = Path.cwd().resolve()
    if kind == "folder" and _inside(cwd, path):
        where = "the current folder" if path == cwd else "a parent of the current folder"
        raise UserError(f"--out {path} is {where}: give a new folder, e.g. --out runs/a")
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if _inside(source, path):
            raise UserError(f"--out {path} holds the input {source}: write the run somewhere else")
    if not path.exists():
        return path
    if not force:
        noun = "output directory" if kind == "folder" else "output file"
        raise UserError(f"{noun} {path} already exists: pass --force to overwrite it")
    if kind == "file":
        if path.is_dir():
            raise UserError(f"--out {path} is a folder; give a file name such as predictions.csv")
        if not is_predictions_file(path):
            raise UserError(f"--force replaces only a predictions file that medloss wrote; {path} is not one (its "
                            "header has no prob_* and predicted columns): remove it yourself or pick another --out")
        return path
    if not path.is_dir():
        raise UserError(f"output path {path} exists and is not a directory")
    foreign = files_not_written_by_medloss(path)
    if foreign is None:
        raise UserError(f"--force replaces only a run folder that medloss wrote (it holds {RUN_MARKER}); {path} is "
                        "not one: remove it yourself or pick another --out")
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise UserError(f"--force would delete {len(foreign)} file(s) in {path} that medloss did not write "
                        f"({shown}): move them out or pick another --out")
    return path


def files_not_written_by_medloss(folder: Path) -> list[str] | None:
    """The files below ``folder`` that its run marker does not list (``None``: no marker, so not a run folder)."""
    marker = folder / RUN_MARKER
    if not marker.is_file():
        return None
    try:
        written = set(json.loads(marker.read_text()).get("files", []))
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    present = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())
    return [name for name in present if name not in written and name != RUN_MARKER]


def is_predictions_file(path: Path) -> bool:
    """``path``'s first line is the header of a ``medloss predict`` output (``prob_*`` columns and ``predicted``)."""
    try:
        with open(path, encoding="utf-8") as fh:
            header = fh.readline().rstrip("\r\n").split(",")
    except (OSError, UnicodeDecodeError):
        return False
    return "predicted" in header and any(c.startswith("prob_") for c in header)


class RunDirectory:
    """Build a run's outputs in a temporary folder next to ``out`` and move it into place at the
    end, so an interrupted or failed run never leaves half-written output. An existing ``out``
    is only replaced with ``force=True``, and only when medloss wrote it (see :func:`check_output`):
    every run folder holds a marker file listing the files the run wrote."""

    def __init__(self, out: str | os.PathLike, *, force: bool = False,
                 inputs: tuple[str | os.PathLike | None, ...] = ()) -> None:
        self.out = check_output(out, force=force, inputs=inputs)
        self.force = force
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", dir=self.out.parent))
        self.tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes it 0700; the run folder follows the umask

    def path(self, name: str) -> Path:
        return self.tmp / name

    def write_json(self, name: str, data: Any) -> Path:
        target = self.path(name)
        target.write_text(json.dumps(to_jsonable(data), indent=2, allow_nan=False))
        return target

    def _write_marker(self) -> None:
        from .. import __version__

        files = sorted(str(p.relative_to(self.tmp)) for p in self.tmp.rglob("*") if not p.is_dir())
        (self.tmp / RUN_MARKER).write_text(json.dumps({"written_by": f"medloss {__version__}", "files": files},
                                                      indent=1))

    def commit(self) -> Path:
        """Move the finished run into place. Without ``force`` a run that appeared at ``out`` while
        this one was working (another process) is never replaced: ``rename`` fails on a non-empty
        directory, atomically, so there is no window between a check and the move. With ``force`` the
        folder is checked again just before it is replaced."""
        self._write_marker()
        if self.force and self.out.exists():
            try:
                check_output(self.out, force=True)
            except UserError:
                self.abort()
                raise
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
