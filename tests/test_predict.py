"""`medloss predict`: a trained run applied to new rows."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from medloss.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    n = 240
    df = pd.DataFrame({"age": rng.normal(60, 10, n), "marker": rng.normal(0, 1, n),
                       "sex": rng.choice(["male", "female"], n)})
    df["outcome"] = np.where(df.marker + 0.05 * (df.age - 60) + rng.normal(0, 0.7, n) > 0, "disease", "healthy")
    df.to_csv(tmp / "train.csv", index=False)
    assert main(["train", "--data", str(tmp / "train.csv"), "--target", "outcome", "--out", str(tmp / "run"),
                 "--hidden", "4", "--no-batch-norm", "--epochs", "30", "--n-boot", "20", "--no-progress"]) == 0
    new = df.drop(columns=["outcome"]).head(9).copy()
    new.insert(0, "id", [f"patient-{i}" for i in range(9)])
    new.loc[2, "age"] = np.nan  # missing values are imputed, as in training
    new.to_csv(tmp / "new.csv", index=False)
    return tmp


def _manual_probabilities(run_dir, new, calibrated=True):
    """The same prediction from the saved artefacts with plain tensor arithmetic: standardise with the
    saved means / stds, one-hot the text column, Linear -> ReLU -> Linear, divide by T, sigmoid."""
    meta = json.loads((run_dir / "metrics.json").read_text())
    pre = meta["preprocessing"]
    cols = []
    for c in pre["numeric"]:
        cols.append((new[c].fillna(pre["means"][c]) - pre["means"][c]) / pre["stds"][c])
    for c in pre["categorical"]:
        values = new[c].str.strip().str.lower().fillna(pre["modes"][c])
        cols += [(values == level).astype(float) for level in pre["levels"][c]]
    x = torch.tensor(np.stack([np.asarray(v, dtype=np.float32) for v in cols], 1))
    state = torch.load(run_dir / "model.pt", weights_only=True)["model"]
    h = torch.relu(x @ state["net.0.weight"].T + state["net.0.bias"])
    z = (h @ state["net.3.weight"].T + state["net.3.bias"])[:, 0].double()
    temperature = json.loads((run_dir / "calibrator.json").read_text())["temperature"] if calibrated else 1.0
    return torch.sigmoid(z / temperature).numpy(), meta["class_names"]


def test_predict_applies_preprocessing_model_and_calibrator(run, capsys):
    out = run / "predictions.csv"
    assert main(["predict", "--run", str(run / "run"), "--data", str(run / "new.csv"), "--out", str(out)]) == 0
    got = pd.read_csv(out)
    new = pd.read_csv(run / "new.csv")
    p_positive, names = _manual_probabilities(run / "run", new)
    assert list(got.columns) == ["id", f"prob_{names[0]}", f"prob_{names[1]}", "predicted"]
    assert got["id"].tolist() == new["id"].tolist()  # one row out per row in, in order
    np.testing.assert_allclose(got[f"prob_{names[1]}"], p_positive, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[f"prob_{names[0]}"] + got[f"prob_{names[1]}"], 1.0, atol=1e-12)
    assert got["predicted"].tolist() == [names[int(p >= 0.5)] for p in p_positive]


def _error(capsys, args):
    code = main(["predict", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("medloss predict: error:") and err.strip().count("\n") == 0, err
    return err


def test_predict_names_a_missing_feature_column(run, capsys):
    pd.read_csv(run / "new.csv").drop(columns=["marker"]).to_csv(run / "nomarker.csv", index=False)
    err = _error(capsys, ["--run", str(run / "run"), "--data", str(run / "nomarker.csv"), "--out", str(run / "x.csv")])
    assert "lacks the training feature column(s) 'marker'" in err and not (run / "x.csv").exists()


def test_predict_rejects_text_in_a_numeric_column(run, capsys):
    new = pd.read_csv(run / "new.csv")
    new["age"] = new["age"].astype(object)
    new.loc[4, "age"] = "sixty"
    new.to_csv(run / "garbage.csv", index=False)
    err = _error(capsys, ["--run", str(run / "run"), "--data", str(run / "garbage.csv"), "--out", str(run / "y.csv")])
    assert "'age' was numeric in training but holds non-numeric value 'sixty'" in err


def test_predict_never_overwrites_without_force(run, capsys):
    out = run / "keep.csv"
    out.write_text("mine")
    err = _error(capsys, ["--run", str(run / "run"), "--data", str(run / "new.csv"), "--out", str(out)])
    assert "--force" in err and out.read_text() == "mine"
    out.unlink()  # --force replaces only medloss's own predictions (tests/test_output_safety.py)
    assert main(["predict", "--run", str(run / "run"), "--data", str(run / "new.csv"), "--out", str(out)]) == 0
    assert main(["predict", "--run", str(run / "run"), "--data", str(run / "new.csv"), "--out", str(out),
                 "--force"]) == 0
    assert out.read_text().startswith("id,prob_")


def test_predict_needs_a_train_run_folder(run, capsys):
    err = _error(capsys, ["--run", str(run), "--data", str(run / "new.csv"), "--out", str(run / "z.csv")])
    assert "is not a `medloss train` run folder: metrics.json, model.pt, calibrator.json missing" in err


def test_predict_follows_the_run_recommendation_and_says_which(run, tmp_path, capsys):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(run / "run", run_dir)
    meta = json.loads((run_dir / "metrics.json").read_text())
    assert meta["calibrator"]["temperature"] != pytest.approx(1.0, abs=1e-3)  # the two answers differ
    new = pd.read_csv(run / "new.csv")
    args = ["predict", "--run", str(run_dir), "--data", str(run / "new.csv")]
    for recommended in ("uncalibrated", "calibrated"):
        meta["calibration_check"].update(recommended=recommended, nll_before=0.088, nll_after=0.102)
        (run_dir / "metrics.json").write_text(json.dumps(meta))
        out = tmp_path / f"{recommended}.csv"
        assert main([*args, "--out", str(out)]) == 0
        said = capsys.readouterr().out
        assert f"({recommended} probabilities, as the run's report recommends" in said
        expected, names = _manual_probabilities(run_dir, new, calibrated=recommended == "calibrated")
        np.testing.assert_allclose(pd.read_csv(out)[f"prob_{names[1]}"], expected, rtol=1e-5, atol=1e-6)
    # --probabilities overrides the recommendation
    out = tmp_path / "forced.csv"
    assert main([*args, "--out", str(out), "--probabilities", "uncalibrated"]) == 0
    assert "(uncalibrated probabilities, as requested" in capsys.readouterr().out
    expected, names = _manual_probabilities(run_dir, new, calibrated=False)
    np.testing.assert_allclose(pd.read_csv(out)[f"prob_{names[1]}"], expected, rtol=1e-5, atol=1e-6)


def test_predict_writes_the_conformal_sets_the_run_fitted(tmp_path, capsys):
    rng = np.random.default_rng(1)
    n = 300
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    df["y"] = np.digitize(df.a + rng.normal(0, 0.6, n), [-0.5, 0.5])
    df.to_csv(tmp_path / "d.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "d.csv"), "--target", "y", "--task", "multiclass", "--conformal",
                 "0.1", "--conformal-method", "lac", "--out", str(tmp_path / "run"), "--epochs", "10", "--n-boot",
                 "20", "--no-progress"]) == 0
    meta = json.loads((tmp_path / "run" / "metrics.json").read_text())
    q = meta["conformal"]["quantile"]
    assert main(["predict", "--run", str(tmp_path / "run"), "--data", str(tmp_path / "d.csv"), "--out",
                 str(tmp_path / "p.csv"), "--sets", "--probabilities", "calibrated"]) == 0
    got = pd.read_csv(tmp_path / "p.csv", dtype={"prediction_set": str})
    probs = got[[f"prob_{c}" for c in meta["class_names"]]].to_numpy()
    # LAC: a class is in the set when 1 - p <= q (p: the calibrated probabilities written beside it)
    for row, written in zip(probs, got["prediction_set"].fillna(""), strict=True):
        expected = "|".join(c for c, p in zip(meta["class_names"], row, strict=True) if 1 - p <= q + 1e-9)
        assert written == expected
    # a run without conformal sets: a one-line error
    assert main(["predict", "--run", str(tmp_path / "run"), "--data", str(tmp_path / "d.csv"), "--out",
                 str(tmp_path / "q.csv"), "--sets"]) == 0
    run2 = tmp_path / "run2"
    assert main(["train", "--data", str(tmp_path / "d.csv"), "--target", "y", "--task", "multiclass", "--out",
                 str(run2), "--epochs", "3", "--n-boot", "20", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["predict", "--run", str(run2), "--data", str(tmp_path / "d.csv"), "--out",
                 str(tmp_path / "r.csv"), "--sets"]) == 2
    assert "fitted no conformal sets" in capsys.readouterr().err
