"""End-to-end CLI runs on small generated files, bad inputs, determinism, reports."""

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medloss.cli import main

FAST = ["--epochs", "15", "--patience", "5", "--n-boot", "50", "--no-progress"]


def tabular(n=240, seed=0, task="binary"):
    rng = np.random.default_rng(seed)
    age = rng.normal(60, 10, n)
    marker = rng.normal(0, 1, n)
    sex = rng.choice(["Male", " male", "FEMALE", "female "], n)
    risk = 0.05 * (age - 60) + 1.5 * marker + (np.char.strip(sex.astype(str)).astype(str) == "Male") * 0.3
    df = pd.DataFrame({"age": age, "marker": marker, "sex": sex})
    df.loc[rng.choice(n, 10, replace=False), "age"] = np.nan
    df.loc[rng.choice(n, 10, replace=False), "sex"] = None
    if task == "binary":
        df["outcome"] = np.where(risk + rng.normal(0, 0.5, n) > 0, "disease", "healthy")
    elif task == "multiclass":
        df["outcome"] = np.digitize(risk + rng.normal(0, 0.5, n), [-0.7, 0.7])
        df["outcome"] = df["outcome"].map({0: "a", 1: "b", 2: "c"})
    else:
        df["outcome"] = np.digitize(risk + rng.normal(0, 0.5, n), [-1.0, 0.0, 1.0])
    return df


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.images, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def parse_report(path: Path) -> _Collector:
    c = _Collector()
    c.feed(path.read_text())
    return c


@pytest.mark.parametrize("task,fmt,loss", [
    ("binary", "csv", "0.5*ce+0.5*soft_f1"),
    ("multiclass", "parquet", "focal"),
    ("ordinal", "csv", "cumulative_link"),
])
def test_train_end_to_end(tmp_path, task, fmt, loss):
    df = tabular(task=task)
    data = tmp_path / f"data.{fmt}"
    df.to_csv(data, index=False) if fmt == "csv" else df.to_parquet(data)
    out = tmp_path / "run"
    extra = ["--hidden", "16", "--no-batch-norm"] if task == "multiclass" else []
    code = main(["train", "--data", str(data), "--target", "outcome", "--task", task, "--loss", loss,
                 "--class-weights", "balanced", "--out", str(out), *extra, *FAST])
    assert code == 0
    for name in ("report.html", "metrics.json", "reliability.png", "clinical_calibration.png", "confusion_matrix.png",
                 "training_curves.png", "model.pt", "calibrator.json"):
        assert (out / name).exists(), name
    # [N, K] probabilities: one clinical calibration figure before calibration and one after
    assert (out / "clinical_calibration_uncalibrated.png").exists() == (task != "binary")
    report = parse_report(out / "report.html")
    assert len(report.images) == (4 if task == "binary" else 5) and all(src.startswith("data:image/png;base64,") for src in report.images)
    assert "table" in report.tags
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == task and metrics["splits"]["train"] + metrics["splits"]["val"] + metrics["splits"]["test"] == len(df)
    after = metrics["test_calibrated"]
    ci = after["calibration"]["ece"]
    assert ci["low"] <= ci["estimate"] <= ci["high"]
    assert 0.4 < after["classification"]["accuracy"] <= 1.0
    if task == "ordinal":
        assert set(after["ordinal"]) >= {"qwk", "mae", "within_1", "kendall_tau_b", "spearman_rho"}
    # the clinical hierarchy: binary flat, per class (one vs rest), per grade threshold
    clinical = after["clinical"]
    assert clinical["kind"] == {"binary": "binary", "multiclass": "per_class", "ordinal": "per_threshold"}[task]
    parts = [clinical["metrics"]] if task == "binary" else list(clinical["metrics"].values())
    assert len(parts) == {"binary": 1, "multiclass": 3, "ordinal": 3}[task]  # 3 classes; 4 grades -> 3 thresholds
    for part in parts:
        slope = part["slope"]
        assert slope["low"] <= slope["estimate"] <= slope["high"] and slope["n_boot"] > 0
    assert "Clinical calibration" in (out / "report.html").read_text()
    # the checkpoint loads with weights_only=True
    state = torch.load(out / "model.pt", weights_only=True)
    assert "model" in state and "loss" in state
    # category spellings were merged: 'male', 'female' only
    assert metrics["preprocessing"]["levels"]["sex"] == ["female", "male"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def _metrics_without_timing(path: Path) -> dict:
    m = json.loads(path.read_text())
    m.pop("environment")
    m.pop("command")
    m["training"].pop("seconds")
    return m


def test_same_seed_same_numbers(tmp_path):
    data = tmp_path / "d.csv"
    tabular(seed=3).to_csv(data, index=False)
    for name in ("a", "b"):
        assert main(["train", "--data", str(data), "--target", "outcome", "--out", str(tmp_path / name), "--seed", "7",
                     *FAST]) == 0
    assert _metrics_without_timing(tmp_path / "a" / "metrics.json") == _metrics_without_timing(tmp_path / "b" / "metrics.json")


def test_binarize_median_and_html_escaping(tmp_path):
    df = tabular(seed=4)
    df["score"] = df["marker"] * 3 + np.random.default_rng(0).normal(0, 1, len(df))
    df = df.drop(columns=["outcome"]).rename(columns={"sex": "<b>sex</b>"})
    df["<b>sex</b>"] = df["<b>sex</b>"].fillna("<script>alert(1)</script>")
    data = tmp_path / "d.csv"
    df.to_csv(data, index=False)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--target", "score", "--binarize", "median", "--out", str(out), *FAST]) == 0
    text = (out / "report.html").read_text()
    assert "<script>" not in text and "<b>sex" not in text
    assert "score &gt; " in text  # class names come from the data and are escaped
    metrics = json.loads((out / "metrics.json").read_text())
    assert any("binarized" in n for n in metrics["notes"])


BAD = [
    ("missing file", lambda p: ["--data", str(p / "nope.csv"), "--target", "y"], "file not found"),
    ("missing target column", lambda p: ["--data", str(p / "ok.csv"), "--target", "nope"], "target column 'nope' not found"),
    ("constant target", lambda p: ["--data", str(p / "constant.csv"), "--target", "y"], "constant"),
    ("non-numeric garbage", lambda p: ["--data", str(p / "garbage.csv"), "--target", "y"], "non-numeric value 'abc'"),
    ("NaN-only column", lambda p: ["--data", str(p / "nancol.csv"), "--target", "y"], "all missing"),
    ("class with one sample", lambda p: ["--data", str(p / "single.csv"), "--target", "y", "--task", "multiclass"], "fewer than 3 samples"),
    ("empty file", lambda p: ["--data", str(p / "empty.csv"), "--target", "y"], "empty"),
    ("labels outside declared range", lambda p: ["--data", str(p / "ordinal.csv"), "--target", "y", "--task", "ordinal", "--num-classes", "3"], "[0, 2]"),
    ("unknown loss", lambda p: ["--data", str(p / "ok.csv"), "--target", "y", "--loss", "nosuch"], "unknown loss"),
    ("ordinal loss on binary task", lambda p: ["--data", str(p / "ok.csv"), "--target", "y", "--loss", "corn"], "--task ordinal"),
    ("not a table", lambda p: ["--data", str(p / "binary.parquet"), "--target", "y"], "cannot read"),
]


@pytest.fixture()
def bad_files(tmp_path):
    rng = np.random.default_rng(0)
    ok = pd.DataFrame({"x": rng.normal(size=30), "y": rng.integers(0, 2, 30)})
    ok.to_csv(tmp_path / "ok.csv", index=False)
    ok.assign(y=1).to_csv(tmp_path / "constant.csv", index=False)
    ok.assign(x=ok["x"].astype(str).where(np.arange(30) != 5, "abc")).to_csv(tmp_path / "garbage.csv", index=False)
    ok.assign(z=np.nan).to_csv(tmp_path / "nancol.csv", index=False)
    ok.assign(y=[0] * 15 + [1] * 14 + [2]).to_csv(tmp_path / "single.csv", index=False)
    (tmp_path / "empty.csv").write_text("")
    ok.assign(y=np.arange(30) % 4).to_csv(tmp_path / "ordinal.csv", index=False)
    (tmp_path / "binary.parquet").write_bytes(b"\x00\x01not parquet at all")
    return tmp_path


@pytest.mark.parametrize("desc,args,message", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_one_line_error_and_nothing_written(bad_files, capsys, desc, args, message):
    out = bad_files / "out"
    code = main(["train", *args(bad_files), "--out", str(out), *FAST])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.strip().count("\n") == 0 and err.startswith("medloss train: error:")
    assert not out.exists()
    assert not [p for p in bad_files.iterdir() if p.name.startswith(".out")]


def test_existing_output_needs_force(tmp_path, capsys):
    data = tmp_path / "d.csv"
    tabular().to_csv(data, index=False)
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["train", "--data", str(data), "--target", "outcome", "--out", str(out), *FAST]) == 2
    assert "--force" in capsys.readouterr().err and (out / "keep.txt").exists()
    # --force replaces only a run folder medloss wrote (tests/test_output_safety.py)
    (out / "keep.txt").unlink()
    out.rmdir()
    assert main(["train", "--data", str(data), "--target", "outcome", "--out", str(out), *FAST]) == 0
    assert main(["train", "--data", str(data), "--target", "outcome", "--out", str(out), "--force", *FAST]) == 0
    assert (out / "report.html").exists()


def test_ctrl_c_keeps_best_checkpoint(tmp_path, monkeypatch):
    from medloss.workflow import train as train_module
    from medloss.workflow.train import build_loss, train

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    setup = build_loss("ce", "binary", 2, y, None)
    calls = {"n": 0}
    real = train_module._loss_value

    def interrupting(*a, **k):
        calls["n"] += 1
        if calls["n"] > 40:  # a few epochs in
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train_module, "_loss_value", interrupting)
    ckpt = tmp_path / "model.pt"
    result = train(setup, x[:150], y[:150], x[150:], y[150:], epochs=100, batch_size=32, checkpoint=ckpt, progress=False)
    assert "interrupted" in result.stopped and ckpt.exists()
    assert result.best_epoch >= 1
    state = torch.load(ckpt, weights_only=True)
    for k, v in result.model.state_dict().items():
        assert torch.equal(v, state["model"][k])


def test_calibrate_command(tmp_path):
    rng = np.random.default_rng(1)
    n, k = 600, 3
    true = rng.normal(size=(n, k)) * 1.5
    labels = np.array([rng.choice(k, p=np.exp(r) / np.exp(r).sum()) for r in true])
    logits = true * 4.0  # over-confident
    df = pd.DataFrame({f"logit_{i}": logits[:, i] for i in range(k)})
    df["label"] = labels
    df["split"] = np.where(np.arange(n) < 300, "val", "test")
    df.to_csv(tmp_path / "preds.csv", index=False)
    out = tmp_path / "cal"
    assert main(["calibrate", "--predictions", str(tmp_path / "preds.csv"), "--out", str(out), "--n-boot", "50"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["calibrated"]["calibration"]["ece"]["estimate"] < m["uncalibrated"]["calibration"]["ece"]["estimate"]
    assert m["calibrator"]["temperature"] > 2
    cal = pd.read_csv(out / "calibrated_predictions.csv")
    assert list(cal.columns) == ["label", "prob_0", "prob_1", "prob_2"] and len(cal) == 300
    # reliability, clinical calibration before and after (one curve per class each), confusion matrix
    assert len(parse_report(out / "report.html").images) == 4
    # logits 4x too large: every class's calibration slope is far below 1 before temperature scaling, near 1 after
    for j in ("0", "1", "2"):
        assert m["uncalibrated"]["clinical"]["metrics"][j]["slope"]["estimate"] < 0.5
        assert 0.7 < m["calibrated"]["clinical"]["metrics"][j]["slope"]["estimate"] < 1.4
    # NPZ of binary probabilities with a separate validation file
    p = 1 / (1 + np.exp(-logits[:, 0]))
    yb = (rng.random(n) < 1 / (1 + np.exp(-true[:, 0]))).astype(int)
    np.savez(tmp_path / "test.npz", probs=p[300:], labels=yb[300:])
    np.savez(tmp_path / "val.npz", probs=p[:300], labels=yb[:300])
    assert main(["calibrate", "--predictions", str(tmp_path / "test.npz"), "--val", str(tmp_path / "val.npz"),
                 "--calibrator", "platt", "--out", str(tmp_path / "cal2"), "--n-boot", "50"]) == 0
    m2 = json.loads((tmp_path / "cal2" / "metrics.json").read_text())
    assert m2["calibrator"]["method"] == "platt"


def test_calibrate_bad_inputs(tmp_path, capsys):
    pd.DataFrame({"prob_0": [0.5, 0.7], "prob_1": [0.5, 0.7], "label": [0, 1]}).to_csv(tmp_path / "bad.csv", index=False)
    assert main(["calibrate", "--predictions", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "sum to 1" in capsys.readouterr().err
    pd.DataFrame({"logit": [0.5, 0.7], "label": [0, 3]}).to_csv(tmp_path / "bad2.csv", index=False)
    assert main(["calibrate", "--predictions", str(tmp_path / "bad2.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "[0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_quick_demo(tmp_path, capsys):
    from medloss.demo import run_demo

    path = run_demo(str(tmp_path / "demo"), quick=True, progress=False)
    out = capsys.readouterr().out
    assert "QWK" in out and "lesion Dice" in out and "report:" in out
    metrics = json.loads((path / "metrics.json").read_text())
    # --quick: two runs of each task, the calibration figures only (binary: reliability + clinical; ordinal:
    # reliability + clinical before and after), and the segmentation examples
    assert len(metrics["binary"]) == 2 and len(metrics["ordinal"]) == 2 and len(metrics["segmentation"]) == 3
    assert len(parse_report(path / "report.html").images) == 2 * 2 + 2 * 3 + 1
    for seg in metrics["segmentation"]:
        ci = seg["lesion_dice_ci"]
        assert ci["estimate"] == pytest.approx(seg["lesion_dice"]) and ci["interval"] in ("bca", "percentile")
        assert (ci["low"] < ci["estimate"] < ci["high"]) or ci["note"]
    assert (path / "segmentation_examples.png").exists()
    study = metrics["calibration_losses"]
    assert [r["loss"] for r in study["rows"]] == ["ce", "focal (gamma 3)", "label smoothing 0.1", "FLSD-53", "MDCA",
                                                  "DCA", "MbLS"]
    assert list(study) == ["rows"]  # the images half is the benchmark's (BENCHMARKS.md)
    assert "Train-time calibration losses" in (path / "report.html").read_text()


def test_calibrate_subgroup_report(tmp_path, capsys):
    # site A calibrated, site B over-confident (logits twice the truth): after one temperature for both, B's
    # slope stays well below A's; the report and metrics.json have one row per site plus "all"
    rng = np.random.default_rng(11)
    n = 1600
    z = rng.normal(0, 1.5, n)
    site = np.where(rng.random(n) < 0.5, "A", "B")
    logit = np.where(site == "B", 2.0 * z, z)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    df = pd.DataFrame({"logit": logit, "label": y, "site": site, "split": np.where(np.arange(n) < 800, "val", "test")})
    df.to_csv(tmp_path / "p.csv", index=False)
    out = tmp_path / "sub"
    assert main(["calibrate", "--predictions", str(tmp_path / "p.csv"), "--subgroup", "site", "--out", str(out),
                 "--n-boot", "100"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["subgroups"]) == ["A", "B", "all"]
    a, b = m["subgroups"]["A"]["intervals"]["slope"], m["subgroups"]["B"]["intervals"]["slope"]
    assert b["high"] < a["low"]  # B's predictions are more over-confident than A's after the shared temperature
    assert m["subgroups"]["A"]["n"] + m["subgroups"]["B"]["n"] == m["subgroups"]["all"]["n"] == 800
    assert "Calibration by subgroup (site" in (out / "report.html").read_text()
    assert main(["calibrate", "--predictions", str(tmp_path / "p.csv"), "--subgroup", "sex", "--out",
                 str(tmp_path / "x")]) == 2
    assert "no column 'sex' for --subgroup" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_train_subgroup_report(tmp_path, capsys):
    df = tabular(n=300, seed=9)
    df["site"] = np.where(np.arange(300) % 3 == 0, "north", "south")
    df.to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "d.csv"), "--target", "outcome", "--subgroup", "site",
                 "--out", str(out), *FAST]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["subgroups"]) == ["north", "south", "all"]
    assert m["subgroups"]["north"]["n"] + m["subgroups"]["south"]["n"] == m["subgroups"]["all"]["n"] == m["splits"]["test"]
    slope = m["subgroups"]["all"]["intervals"]["slope"]
    assert slope["estimate"] == pytest.approx(m["test_calibrated"]["clinical"]["metrics"]["slope"]["estimate"], abs=1e-12)
    assert main(["train", "--data", str(tmp_path / "d.csv"), "--target", "outcome", "--task", "multiclass",
                 "--subgroup", "site", "--out", str(tmp_path / "x"), *FAST]) == 2
    assert "--task binary" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_coral_is_refused_by_train_with_the_alternatives():
    # CORAL's probabilities need its own layer (shared score + biases); an MLP's independent outputs
    # could give negative grade probabilities, so `medloss train` says so instead of training it
    from medloss.workflow.io import UserError
    from medloss.workflow.train import build_loss

    with pytest.raises(UserError, match="CORAL output layer.*cumulative_link"):
        build_loss("coral", "ordinal", 4, np.array([0, 1, 2, 3, 1]), None)
    setup = build_loss("corn", "ordinal", 4, np.array([0, 1, 2, 3, 1]), None)
    assert setup.n_out == 3


def _multiclass_predictions(tmp_path, n=3000, k=4, seed=12):
    # class-wise miscalibrated logits of a 4-grade model, with a split column
    rng = np.random.default_rng(seed)
    truth = 1.5 * rng.normal(size=(n, k))
    p = np.exp(truth) / np.exp(truth).sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p])
    logits = truth * np.linspace(0.5, 3.0, k) + np.linspace(-1, 1, k)
    df = pd.DataFrame({f"logit_{j}": logits[:, j] for j in range(k)})
    df["label"] = y
    df["split"] = np.where(np.arange(n) < n // 2, "val", "test")
    path = tmp_path / "preds.csv"
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("method,conformal_method", [("vector", "aps"), ("dirichlet", "ordinal"),
                                                     ("classwise_temperature", "lac")])
def test_calibrate_method_and_conformal_sets(tmp_path, method, conformal_method):
    path = _multiclass_predictions(tmp_path)
    out = tmp_path / "run"
    assert main(["calibrate", "--predictions", str(path), "--method", method, "--conformal", "0.1",
                 "--conformal-method", conformal_method, "--n-boot", "50", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["calibrator"]["method"] == method
    conf = m["conformal"]
    assert conf["method"] == conformal_method and conf["alpha"] == 0.1 and conf["n_calibration"] == 750
    assert conf["coverage"] >= 0.87  # >= 0.9 in expectation; 1500 evaluation rows
    assert sum(v["n"] for v in conf["per_class"].values()) == 1500
    preds = pd.read_csv(out / "calibrated_predictions.csv")
    sets = preds["prediction_set"].astype(str).str.split("|")
    covered = np.mean([str(label) in s for label, s in zip(preds["label"], sets, strict=True)])
    assert covered == pytest.approx(conf["coverage"])
    if conformal_method == "ordinal":  # contiguous grades
        assert all(max(map(int, s)) - min(map(int, s)) + 1 == len(s) for s in sets)
    html = (out / "report.html").read_text()
    assert "Conformal prediction sets" in html and "mean set size" in html
    # the richer calibrator beats one temperature on this class-wise miscalibrated set
    assert m["calibrated"]["calibration"]["nll"]["estimate"] < m["uncalibrated"]["calibration"]["nll"]["estimate"]


def test_calibrate_method_and_conformal_errors(tmp_path, capsys):
    path = _multiclass_predictions(tmp_path, n=200)
    assert main(["calibrate", "--predictions", str(path), "--method", "beta", "--out", str(tmp_path / "a")]) == 2
    assert "--method beta is for binary models" in capsys.readouterr().err
    assert main(["calibrate", "--predictions", str(path), "--conformal", "0.001", "--out", str(tmp_path / "b")]) == 2
    assert "needs at least 999 calibration samples" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["calibrate", "--predictions", str(path), "--conformal", "1.5", "--out", str(tmp_path / "c")])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_calibrate_method_auto_chooses_on_cross_validation_and_shows_the_table(tmp_path):
    # class-wise miscalibration (a temperature per class): one temperature cannot undo it, class-wise can
    path = _multiclass_predictions(tmp_path)
    out = tmp_path / "run"
    assert main(["calibrate", "--predictions", str(path), "--method", "auto", "--n-boot", "20", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    selection = m["calibrator"]["selection"]
    names = [row["name"] for row in selection["table"]]
    assert set(names) >= {"temperature", "classwise_temperature", "vector", "matrix", "dirichlet_odir", "none"}
    assert m["calibrator"]["method"] == selection["best"] != "temperature"
    chosen = next(r for r in selection["table"] if r["name"] == selection["best"])
    temperature = next(r for r in selection["table"] if r["name"] == "temperature")
    assert chosen["within_one_se"] and chosen["nll"] < temperature["nll"]
    html = (out / "report.html").read_text()
    assert "Calibrator selection" in html and "within 1 SE of the best" in html


@pytest.mark.parametrize("loss", ["focal_adaptive", "mdca", "dca", "mbls", "0.5*mdca+0.5*focal_adaptive"])
def test_train_accepts_the_calibration_losses(tmp_path, loss):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 4))
    y = np.digitize(x[:, 0] + rng.normal(size=240), [-0.8, 0.8])  # 3 classes
    df = pd.DataFrame({f"f{i}": x[:, i] for i in range(4)} | {"y": y})
    df.to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "d.csv"), "--target", "y", "--task", "multiclass", "--loss", loss,
                 "--class-weights", "balanced", "--epochs", "5", "--n-boot", "10", "--out", str(out),
                 "--no-progress"]) == 0
    assert json.loads((out / "metrics.json").read_text())["loss"] == loss
