"""CLI: bad input is one line on stderr, exit 2, nothing written; runs never replace each other."""

import os
import stat

import numpy as np
import pandas as pd
import pytest

from medloss.cli import main
from medloss.workflow.io import RunDirectory, UserError


def _calibrate(tmp_path, name, capsys):
    out = tmp_path / "out"
    code = main(["calibrate", "--predictions", str(tmp_path / name), "--out", str(out), "--n-boot", "20"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("medloss calibrate: error:") and err.strip().count("\n") == 0, err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    return err


def test_npz_with_fewer_labels_than_rows_is_an_error(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "p.npz", logits=rng.normal(size=(600, 3)), labels=rng.integers(0, 3, 10))
    err = _calibrate(tmp_path, "p.npz", capsys)
    assert "[600, 3] (600 rows) but 'labels' has shape [10]" in err


def test_npz_with_both_logits_and_probs_is_an_error(tmp_path, capsys):
    np.savez(tmp_path / "p.npz", logits=np.zeros((4, 2)), probs=np.full((4, 2), 0.5), labels=np.array([0, 1, 0, 1]))
    assert "both 'logits' and 'probs'" in _calibrate(tmp_path, "p.npz", capsys)


def test_csv_with_both_logit_and_prob_columns_names_them(tmp_path, capsys):
    pd.DataFrame({"logit_0": [0.1, 0.2], "logit_1": [0.3, 0.1], "prob_0": [0.4, 0.5], "prob_1": [0.6, 0.5],
                  "label": [0, 1]}).to_csv(tmp_path / "p.csv", index=False)
    assert "logit_0, logit_1, prob_0, prob_1" in _calibrate(tmp_path, "p.csv", capsys)


@pytest.mark.parametrize("columns,message", [
    (["logit_0", "logit_2"], "found logit_0, logit_2; missing logit_1"),
    (["logit_0"], "a single column logit_0 is not a K-class output"),
    (["x", "y"], "found x, y, label"),
])
def test_csv_value_columns_must_be_complete(tmp_path, capsys, columns, message):
    df = pd.DataFrame({c: np.linspace(-1, 1, 8) for c in columns})
    df["label"] = [0, 1] * 4
    df.to_csv(tmp_path / "p.csv", index=False)
    assert message in _calibrate(tmp_path, "p.csv", capsys)


def test_one_row_file_is_an_error(tmp_path, capsys):
    pd.DataFrame({"logit": [0.3], "label": [1]}).to_csv(tmp_path / "p.csv", index=False)
    assert "1 row(s): calibration needs at least 2" in _calibrate(tmp_path, "p.csv", capsys)


def test_a_run_that_appears_meanwhile_is_not_replaced(tmp_path):
    out = tmp_path / "run"
    mine = RunDirectory(out)
    mine.write_json("metrics.json", {"who": "late run"})
    # another run finishes first
    out.mkdir()
    (out / "metrics.json").write_text('{"who": "early run"}')
    with pytest.raises(UserError, match="appeared while this run was working"):
        mine.commit()
    assert (out / "metrics.json").read_text() == '{"who": "early run"}'
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # the hidden folder is gone too
    # --force replaces it once it is a run folder medloss wrote
    import shutil

    shutil.rmtree(out)
    RunDirectory(out).commit()
    forced = RunDirectory(out, force=True)
    forced.write_json("metrics.json", {"who": "forced run"})
    forced.commit()
    assert "forced run" in (out / "metrics.json").read_text()


def test_outputs_follow_the_umask(tmp_path):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 2))
    y = (z[:, 1] - z[:, 0] + rng.normal(size=200) > 0).astype(int)
    pd.DataFrame({"logit_0": z[:, 0], "logit_1": z[:, 1], "label": y}).to_csv(tmp_path / "p.csv", index=False)
    old = os.umask(0o022)
    try:
        assert main(["calibrate", "--predictions", str(tmp_path / "p.csv"), "--out", str(tmp_path / "o"),
                     "--n-boot", "20"]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "o").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "o" / "calibrator.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "o" / "metrics.json").stat().st_mode) == 0o644


@pytest.fixture()
def table(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    df["y"] = (df.a + rng.normal(size=200) > 0).astype(int)
    df.to_csv(tmp_path / "ok.csv", index=False)
    df.assign(a=df.a.where(df.index != 3, np.inf)).to_csv(tmp_path / "inf.csv", index=False)
    return tmp_path


def _train(tmp_path, capsys, *args):
    out = tmp_path / "run"
    code = main(["train", "--target", "y", "--out", str(out), "--epochs", "5", "--n-boot", "20", "--no-progress",
                 *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("medloss train: error:") and err.strip().count("\n") == 0, err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]
    return err


def test_infinite_feature_value_names_the_column_and_row(table, capsys):
    err = _train(table, capsys, "--data", str(table / "inf.csv"))
    assert "feature column 'a' holds 1 infinite value(s) (first in data row 4)" in err


def test_diverging_training_says_so_and_suggests_a_lower_rate(table, capsys):
    err = _train(table, capsys, "--data", str(table / "ok.csv"), "--lr", "1e6")
    assert "training diverged" in err and "try a lower --lr, e.g. --lr 0.001" in err


@pytest.mark.parametrize("args,message", [
    (["--dropout", "2"], "argument --dropout: expected a dropout probability in [0, 1); got '2'"),
    (["--seed", "-5"], "argument --seed: expected an integer seed in [0, 2**32 - 1]; got '-5'"),
])
def test_out_of_range_options_are_usage_errors(table, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(table / "ok.csv"), "--target", "y", "--out", str(table / "run"), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (table / "run").exists()


def test_unwritable_output_is_a_one_line_error(table, capsys, monkeypatch):
    import errno
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(table / ".run.x"))

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    err = _train(table, capsys, "--data", str(table / "ok.csv"))
    assert "cannot write the outputs" in err and "Read-only file system" in err


def test_sigterm_removes_the_hidden_run_folder(table):
    import signal
    import subprocess
    import sys
    import time

    out = table / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "medloss", "train", "--data", str(table / "ok.csv"), "--target", "y", "--out", str(out),
         "--epochs", "100000", "--patience", "100000", "--no-progress"],
        stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and not [p for p in table.iterdir() if p.name.startswith(".run")]:
        time.sleep(0.05)  # wait until the run has made its hidden folder
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM); nothing was written" in err
    assert not out.exists() and not [p for p in table.iterdir() if p.name.startswith(".run")]


@pytest.mark.parametrize("command,option", [("train", "--task"), ("calibrate", "--calibrator"), ("train", "--seed"),
                                            ("calibrate", "--seed"), ("demo", "--seed")])
def test_options_have_help_text(command, option, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    line = text[text.index(option):].split("\n  --")[0]
    assert len(line.split()) > 4, line  # more than the option's name and its choices


def test_report_uses_one_binning_for_tables_and_diagrams(table, monkeypatch):
    """The diagrams' legends (ECE, MCE) used 10 bins while the tables said 15; --n-bins sets both."""
    from medloss.workflow import pipeline
    from medloss.workflow.evaluate import N_BINS, binning_note

    seen = []
    real = pipeline.plot_reliability_diagram

    def spy(*args, **kwargs):
        seen.append(kwargs["n_bins"])
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "plot_reliability_diagram", spy)
    for extra, n_bins in (([], N_BINS), (["--n-bins", "8"], 8)):
        out = table / f"binning{n_bins}"
        assert main(["train", "--data", str(table / "ok.csv"), "--target", "y", "--out", str(out), "--epochs", "5",
                     "--n-boot", "20", "--no-progress", *extra]) == 0
        assert seen[-1] == n_bins and N_BINS == 15
        html_text = (out / "report.html").read_text()
        assert binning_note(n_bins).split(" (lo")[0] in html_text
