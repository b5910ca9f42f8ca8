"""`--out` / `--force` never destroy what medloss did not write, and are checked before any work."""

import json
import os
import time

import numpy as np
import pandas as pd
import pytest

from medloss.cli import main
from medloss.workflow.io import RUN_MARKER, RunDirectory
from test_workflow import FAST, tabular


@pytest.fixture()
def data(tmp_path):
    path = tmp_path / "mydata.csv"
    tabular().to_csv(path, index=False)
    return path


def _train(data, out, *extra):
    return main(["train", "--data", str(data), "--target", "outcome", "--out", str(out), *FAST, *extra])


def _one_line_error(capsys, command="train"):
    err = capsys.readouterr().err
    assert err.startswith(f"medloss {command}: error:") and err.strip().count("\n") == 0, err
    return err


def test_force_never_deletes_a_folder_holding_the_input(tmp_path, capsys):
    folder = tmp_path / "scratch2"
    folder.mkdir()
    data = folder / "mydata.csv"
    tabular().to_csv(data, index=False)
    (folder / "notes.txt").write_text("mine")
    assert _train(data, folder, "--force") == 2
    assert "holds the input" in _one_line_error(capsys)
    assert data.exists() and (folder / "notes.txt").read_text() == "mine"
    # a parent of the input's folder is refused too
    assert _train(data, tmp_path, "--force") == 2
    assert "holds the input" in _one_line_error(capsys)


def test_force_never_deletes_the_current_folder_or_a_parent(tmp_path, data, capsys, monkeypatch):
    here = tmp_path / "scratch3"
    (here / "sub").mkdir(parents=True)
    (here / "precious.txt").write_text("mine")
    monkeypatch.chdir(here)
    for out in (".", "..", str(here)):
        assert _train(data, out, "--force") == 2
        assert "current folder" in _one_line_error(capsys)
    assert (here / "precious.txt").read_text() == "mine" and (here / "sub").is_dir()


def test_force_replaces_only_a_run_folder_medloss_wrote(tmp_path, data, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert _train(data, out) == 2
    assert "pass --force" in _one_line_error(capsys)
    assert _train(data, out, "--force") == 2  # no marker: not a run folder
    assert RUN_MARKER in _one_line_error(capsys) and (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    out.rmdir()
    assert _train(data, out) == 0
    marker = json.loads((out / RUN_MARKER).read_text())
    assert "metrics.json" in marker["files"] and "report.html" in marker["files"]
    # a file the user added to a run folder is not deleted by --force
    (out / "my_notes.txt").write_text("mine")
    assert _train(data, out, "--force") == 2
    err = _one_line_error(capsys)
    assert "my_notes.txt" in err and (out / "my_notes.txt").read_text() == "mine"
    (out / "my_notes.txt").unlink()
    before = (out / "metrics.json").stat().st_mtime_ns
    assert _train(data, out, "--force", "--seed", "1") == 0  # a medloss run folder is replaced
    assert (out / "metrics.json").stat().st_mtime_ns != before
    assert "--seed 1" in json.loads((out / "metrics.json").read_text())["command"]


def test_calibrate_refuses_an_existing_out_before_any_work(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 3))
    pd.DataFrame({"logit_0": z[:, 0], "logit_1": z[:, 1], "logit_2": z[:, 2],
                  "label": rng.integers(0, 3, 400)}).to_csv(tmp_path / "p.csv", index=False)
    out = tmp_path / "audit"
    out.mkdir()
    from medloss.workflow import pipeline

    def never(*args, **kwargs):
        raise AssertionError("the predictions were read before --out was checked")

    monkeypatch.setattr(pipeline, "read_predictions", never)
    assert main(["calibrate", "--predictions", str(tmp_path / "p.csv"), "--out", str(out)]) == 2
    assert "already exists" in _one_line_error(capsys, "calibrate")
    assert main(["calibrate", "--predictions", str(tmp_path / "p.csv"), "--out", str(tmp_path), "--force"]) == 2
    assert "holds the input" in _one_line_error(capsys, "calibrate")


def test_demo_refuses_a_foreign_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "paper.tex").write_text("mine")
    t0 = time.perf_counter()
    assert main(["demo", "--out", str(out), "--force", "--quick", "--no-progress"]) == 2
    assert time.perf_counter() - t0 < 5  # refused before any training
    assert RUN_MARKER in _one_line_error(capsys, "demo") and (out / "paper.tex").exists()


def test_predict_force_replaces_only_a_predictions_file(tmp_path, data, capsys):
    run = tmp_path / "run"
    assert _train(data, run) == 0
    new = tabular(n=20, seed=1).drop(columns=["outcome"])
    new.to_csv(tmp_path / "new.csv", index=False)
    args = ["predict", "--run", str(run), "--data", str(tmp_path / "new.csv")]
    # the input itself, a file the user wrote, a file inside the run folder: refused even with --force
    assert main([*args, "--out", str(tmp_path / "new.csv"), "--force"]) == 2
    assert "holds the input" in _one_line_error(capsys, "predict")
    mine = tmp_path / "mine.csv"
    mine.write_text("a,b\n1,2\n")
    assert main([*args, "--out", str(mine), "--force"]) == 2
    assert "not one" in _one_line_error(capsys, "predict") and mine.read_text() == "a,b\n1,2\n"
    assert main([*args, "--out", str(run / "model.pt"), "--force"]) == 2
    _one_line_error(capsys, "predict")
    out = tmp_path / "pred.csv"
    assert main([*args, "--out", str(out)]) == 0
    assert main([*args, "--out", str(out), "--force"]) == 0  # its own output is replaced
    assert os.path.getsize(out) > 0


def test_run_directory_force_rechecks_before_replacing(tmp_path):
    out = tmp_path / "run"
    run = RunDirectory(out, force=True)
    run.write_json("metrics.json", {})
    # someone else's folder appears meanwhile: --force does not delete it
    out.mkdir()
    (out / "theirs.txt").write_text("theirs")
    from medloss.workflow.io import UserError

    with pytest.raises(UserError, match=RUN_MARKER):
        run.commit()
    assert (out / "theirs.txt").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
