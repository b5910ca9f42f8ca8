"""How a target column becomes labels: ordinal grades as the user writes them."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from medloss.cli import main
from medloss.workflow.data import prepare_target
from medloss.workflow.io import UserError


def _frame(grades):
    return pd.DataFrame({"x": np.arange(len(grades), dtype=float), "grade": grades})


def test_one_based_grades_are_the_observed_grades():
    df, target = prepare_target(_frame([1, 2, 3, 4, 2, 3, 1, 4]), "grade", "ordinal")
    assert target.class_names == ["grade 1", "grade 2", "grade 3", "grade 4"]
    assert target.y.tolist() == [0, 1, 2, 3, 1, 2, 0, 3]


def test_a_gap_between_observed_grades_is_a_warning_and_a_note():
    with pytest.warns(UserWarning, match=r"grade\(s\) 3 between the observed grades 1..4.*--grades 1,2,3,4"):
        _, target = prepare_target(_frame([1, 2, 4, 4, 2, 1]), "grade", "ordinal")
    assert target.class_names == ["grade 1", "grade 2", "grade 4"]
    assert target.y.tolist() == [0, 1, 2, 2, 1, 0]
    assert any("never occur" in n for n in target.notes)


def test_grades_named_in_order_keep_an_absent_grade_and_their_order():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, target = prepare_target(_frame([1, 2, 4, 4, 2.0, 1]), "grade", "ordinal", grades=["1", "2", "3", "4"])
    assert target.class_names == ["grade 1", "grade 2", "grade 3", "grade 4"]
    assert target.y.tolist() == [0, 1, 3, 3, 1, 0]
    _, words = prepare_target(_frame(["severe", "mild", "moderate", "mild"]), "grade", "ordinal",
                              grades=["mild", "moderate", "severe"])
    assert words.y.tolist() == [2, 0, 1, 0]


@pytest.mark.parametrize("kwargs,message", [
    ({"grades": ["1", "2"]}, "value(s) '3' that --grades (1,2) does not name"),
    ({"grades": ["1", "2", "3"], "num_classes": 4}, "not both"),
    ({"num_classes": 3}, "[0, 2]"),
])
def test_grade_errors(kwargs, message):
    with pytest.raises(UserError) as err:
        prepare_target(_frame([1, 2, 3]), "grade", "ordinal", **kwargs)
    assert message in str(err.value)


def test_cli_trains_one_based_grades_with_their_own_classes(tmp_path):
    rng = np.random.default_rng(0)
    n = 240
    x = rng.normal(size=n)
    grade = 1 + np.digitize(x + rng.normal(0, 0.5, n), [-0.7, 0.0, 0.7])  # grades 1..4
    pd.DataFrame({"x": x, "z": rng.normal(size=n), "grade": grade}).to_csv(tmp_path / "g.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "g.csv"), "--target", "grade", "--task", "ordinal",
                 "--out", str(tmp_path / "run"), "--epochs", "5", "--n-boot", "20", "--no-progress"]) == 0
    meta = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert meta["class_names"] == ["grade 1", "grade 2", "grade 3", "grade 4"]
    assert len(meta["test_calibrated"]["classification"]["confusion_matrix"]) == 4


def _patients(n=240, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"id": [f"P{i:04d}" for i in rng.permutation(n)], "code": [f"c-{i}" for i in range(n)],
                       "age": rng.normal(60, 10, n), "marker": rng.normal(0, 1, n),
                       "visit": rng.integers(1, 5, n)})
    df["outcome"] = np.where(df.marker + rng.normal(0, 0.7, n) > 0, "disease", "healthy")
    return df


TRAIN = ["--target", "outcome", "--epochs", "5", "--n-boot", "20", "--no-progress"]


def test_identifier_columns_are_not_features_and_predictions_carry_the_id(tmp_path, capsys):
    df = _patients()
    df.to_csv(tmp_path / "d.csv")  # index=True: an 'Unnamed: 0' column numbering the rows
    assert main(["train", "--data", str(tmp_path / "d.csv"), "--out", str(tmp_path / "run"), *TRAIN]) == 0
    err = capsys.readouterr().err
    for col in ("Unnamed: 0", "id", "code"):
        assert f"column {col!r} is not used as a feature" in err
    meta = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert sorted(meta["preprocessing"]["numeric"] + meta["preprocessing"]["categorical"]) == ["age", "marker",
                                                                                                "visit"]
    assert meta["id_column"] == "Unnamed: 0"
    new = df.drop(columns=["outcome"]).head(7)
    new.to_csv(tmp_path / "new.csv", index=False)  # no 'Unnamed: 0' here: the 'id' column is carried instead
    assert main(["predict", "--run", str(tmp_path / "run"), "--data", str(tmp_path / "new.csv"),
                 "--out", str(tmp_path / "p.csv")]) == 0
    assert pd.read_csv(tmp_path / "p.csv")["id"].tolist() == new["id"].tolist()


def test_features_exclude_and_id_column_flags(tmp_path, capsys):
    df = _patients()
    df.to_csv(tmp_path / "d.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "d.csv"), "--out", str(tmp_path / "a"), "--exclude", "visit",
                 "--id-column", "code", *TRAIN]) == 0
    meta = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert sorted(meta["preprocessing"]["numeric"]) == ["age", "marker"] and meta["id_column"] == "code"
    new = df.drop(columns=["outcome"]).head(5)
    new.to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", "--run", str(tmp_path / "a"), "--data", str(tmp_path / "new.csv"),
                 "--out", str(tmp_path / "p.csv")]) == 0
    assert pd.read_csv(tmp_path / "p.csv").columns[0] == "code"
    assert main(["train", "--data", str(tmp_path / "d.csv"), "--out", str(tmp_path / "b"), "--features",
                 "marker,visit", *TRAIN]) == 0
    meta = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert sorted(meta["preprocessing"]["numeric"]) == ["marker", "visit"]
    capsys.readouterr()
    assert main(["train", "--data", str(tmp_path / "d.csv"), "--out", str(tmp_path / "c"), "--features",
                 "marker,nope", *TRAIN]) == 2
    assert "--features: no column 'nope'" in capsys.readouterr().err
