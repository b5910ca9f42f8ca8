"""What a clinician reads must not mislead: a calibrator that makes held-out NLL worse is
flagged and not recommended; binary reports carry operating points with Wilson intervals."""

import json

import numpy as np
import pandas as pd
import pytest

from medloss.cli import main
from medloss.workflow.evaluate import (
    operating_points,
    threshold_for_sensitivity,
    threshold_for_specificity,
    wilson_interval,
)


def test_wilson_interval_matches_newcombe_1998():
    # Newcombe, Statistics in Medicine 17:857 (1998), Table I example 81/263: Wilson score 0.2553 to 0.3662
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    # and 0/10 (his example (d)): 0 to 0.2775
    assert (round(wilson_interval(0, 10)[0], 4), round(wilson_interval(0, 10)[1], 4)) == (0.0, 0.2775)


@pytest.mark.parametrize("target", [0.9, 0.95])
def test_thresholds_are_the_extreme_ones_meeting_the_target(target):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 301)
    p = np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1)
    candidates = np.unique(np.concatenate([p, np.nextafter(p, np.inf)]))
    sens = np.array([np.mean(p[y == 1] >= t) for t in candidates])
    spec = np.array([np.mean(p[y == 0] < t) for t in candidates])
    # brute force over every distinct threshold: the highest meeting the sensitivity target, the lowest
    # meeting the specificity target
    assert threshold_for_sensitivity(p, y, target) == candidates[sens >= target].max()
    assert threshold_for_specificity(p, y, target) == candidates[spec >= target].min()


def test_operating_points_count_the_test_confusion_matrix():
    p_val = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9, 0.95])
    y_val = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p_test = np.array([0.05, 0.5, 0.65, 0.75, 0.85, 0.99])
    y_test = np.array([0, 0, 1, 0, 1, 1])
    rows = operating_points(p_val, y_val, p_test, y_test)
    first = rows[0]  # sensitivity >= 0.90 on validation: all 4 positives -> threshold 0.7
    assert first["threshold"] == 0.7
    # test at p >= 0.7: TP = 2 (0.85, 0.99), FN = 1 (0.65), FP = 1 (0.75), TN = 2
    assert first["sensitivity"]["estimate"] == pytest.approx(2 / 3) and first["sensitivity"]["n"] == 3
    assert first["specificity"]["estimate"] == pytest.approx(2 / 3)
    assert first["ppv"]["estimate"] == pytest.approx(2 / 3) and first["npv"]["estimate"] == pytest.approx(2 / 3)
    assert (first["sensitivity"]["low"], first["sensitivity"]["high"]) == wilson_interval(2, 3)


def test_a_calibrator_that_worsens_test_nll_is_flagged_and_not_recommended(tmp_path, capsys):
    rng = np.random.default_rng(3)
    n, k = 600, 3

    def draw(sharpness):
        z = rng.normal(size=(n, k)) * 2.0
        probs = np.exp(sharpness * z) / np.exp(sharpness * z).sum(1, keepdims=True)
        labels = np.array([rng.choice(k, p=row) for row in probs])
        frame = pd.DataFrame({f"logit_{i}": z[:, i] for i in range(k)})
        frame["label"] = labels
        return frame

    draw(3.0).to_csv(tmp_path / "val.csv", index=False)  # under-confident on validation: T ~ 1/3
    draw(1.0).to_csv(tmp_path / "test.csv", index=False)  # already calibrated on test: T = 1/3 hurts
    out = tmp_path / "cal"
    assert main(["calibrate", "--predictions", str(tmp_path / "test.csv"), "--val", str(tmp_path / "val.csv"),
                 "--out", str(out), "--n-boot", "20"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    check = metrics["calibration_check"]
    assert metrics["calibrator"]["temperature"] < 0.5
    assert check["nll_after"] > check["nll_before"] and check["recommended"] == "uncalibrated"
    html_text = (out / "report.html").read_text()
    assert 'class="warning"' in html_text and "Calibration verdict: hurt" in html_text
    assert "NLL worsened" in html_text and "(hurt: not recommended)" in html_text
    assert "warning: calibration hurt on the held-out test split (nll" in capsys.readouterr().err


def test_binary_train_report_has_operating_points(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    df["y"] = np.where(df.a + rng.normal(0, 0.8, 300) > 0, "sick", "well")
    df.to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "d.csv"), "--target", "y", "--out", str(out), "--epochs", "10",
                 "--n-boot", "20", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    points = metrics["operating_points"]["points"]
    assert metrics["operating_points"]["probabilities"] == metrics["calibration_check"]["recommended"]
    assert [p["chosen_for"] for p in points] == [
        "sensitivity >= 0.90 on validation", "sensitivity >= 0.95 on validation",
        "specificity >= 0.90 on validation", "specificity >= 0.95 on validation"]
    for p in points:
        for key in ("sensitivity", "specificity", "ppv", "npv"):
            d = p[key]
            assert d["n"] == 0 or d["low"] <= d["estimate"] <= d["high"]
    assert "Operating points (thresholds chosen on validation" in (out / "report.html").read_text()


def test_demo_segmentation_text_follows_its_numbers():
    """The quick demo said the overlap losses find the lesions while its Unified Focal run scored 0."""
    from medloss.demo import segmentation_sentence

    results = [{"loss": "ce", "lesion_dice": 0.0}, {"loss": "dice", "lesion_dice": 0.757},
               {"loss": "asymmetric_unified_focal", "lesion_dice": 0.0}]
    text = segmentation_sentence(results, 5)
    assert "ce 0.00; dice 0.76; asymmetric_unified_focal 0.00" in text
    assert "dice found most of the lesions" in text
    assert "ce, asymmetric_unified_focal predicted background almost everywhere" in text and "in so few epochs" in text
    assert "found" not in segmentation_sentence([{"loss": "ce", "lesion_dice": 0.01}], 30)


def test_report_has_a_table_of_contents_in_section_order():
    from medloss.workflow.report import Report

    report = Report("r")
    for name in ("Run: binary: 0.5*ce+0.5*soft_f1", "Test metrics", "Figures"):
        report.heading(name)
    report.parts = report.parts[-1:] + report.parts[:-1]  # sections moved (as the demo moves its summary)
    page = report.html()
    toc = page[page.index('<nav class="toc">'):page.index("</nav>")]
    assert toc.index("Figures") < toc.index("Run: binary: 0.5*ce+0.5*soft_f1") < toc.index("Test metrics")
    assert 'href="#s2"' in toc and '<h2 id="s2">Figures</h2>' in page


def test_class_and_subgroup_names_are_escaped_once():
    # Report.table escapes every cell: a name with & or < must read "A&amp;B", not "A&amp;amp;B"
    from medloss.workflow.report import Report, add_conformal, add_subgroups

    report = Report("t")
    add_conformal(report, {"method": "aps", "alpha": 0.1, "quantile": 0.5, "n_calibration": 10,
                           "target_coverage": 0.9, "coverage": 0.9, "mean_set_size": 1.5, "empty_sets": 0,
                           "per_class": {0: {"n": 3, "coverage": 1.0, "mean_set_size": 1.0}}}, ["A&B<1>"])
    add_subgroups(report, {"site<x>": {"n": 5, "events": 2, "intervals": None, "error": "one outcome & no fit"}},
                  "site&region", "temperature")
    html = "".join(report.parts)
    assert "A&amp;B&lt;1&gt;" in html and "&amp;amp;" not in html
    assert "site&lt;x&gt;" in html and "site&amp;region" in html and "one outcome &amp; no fit" in html


def _metrics(nll, ece, adaptive_ece):
    return {"calibration": {"nll": {"estimate": nll}, "ece": {"estimate": ece},
                            "adaptive_ece": {"estimate": adaptive_ece}}}


@pytest.mark.parametrize("before,after,verdict,changes", [
    # NLL 0.1 % better (within 1 %) while the adaptive ECE rose by 0.055: hurt, not "improved NLL"
    ((1.0599, 0.10, 0.155), (1.0588, 0.10, 0.210), "hurt", ("no change", "no change", "worsened")),
    # the same rule the other way: every metric lower by more than its tolerance
    ((1.0588, 0.20, 0.210), (1.0, 0.15, 0.155), "improved", ("improved", "improved", "improved")),
    # a better NLL with an ECE 0.02 worse is hurt; changes inside every tolerance are no change
    ((0.50, 0.05, 0.05), (0.40, 0.07, 0.05), "hurt", ("improved", "worsened", "no change")),
    ((0.50, 0.05, 0.05), (0.499, 0.059, 0.041), "no change", ("no change", "no change", "no change")),
])
def test_one_verdict_rule_both_ways(before, after, verdict, changes):
    from medloss.workflow.evaluate import calibration_check

    check = calibration_check(_metrics(*before), _metrics(*after))
    assert check["verdict"] == verdict
    assert tuple(check["changes"][k]["change"] for k in ("nll", "ece", "adaptive_ece")) == changes
    assert check["recommended"] == ("uncalibrated" if verdict == "hurt" else "calibrated")
    assert calibration_check(_metrics(*before), _metrics(*after), unfitted="separable")["verdict"] == "not fitted"


def test_saturated_counts_probabilities_within_1e_4_of_0_or_1():
    from medloss.workflow.evaluate import saturated

    assert saturated(np.array([0.0, 5e-5, 0.5, 0.99995, 1.0, 0.9998])) == 4
    assert saturated(np.array([[0.99995, 5e-5], [0.6, 0.4]])) == 1


def _walk_intervals(node, path=""):
    if isinstance(node, dict):
        if {"estimate", "low", "high", "interval"} <= set(node):
            yield path, node
        for k, v in node.items():
            yield from _walk_intervals(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk_intervals(v, f"{path}/{i}")


def test_separable_validation_split_says_calibration_could_not_be_fitted(tmp_path, capsys):
    # validation logits separate the classes perfectly; the test split is miscalibrated
    rng = np.random.default_rng(0)
    y_val = rng.integers(0, 2, 200)
    val = pd.DataFrame({"logit": np.where(y_val == 1, 1.0, -1.0) + rng.uniform(0, 2, 200) * (2 * y_val - 1),
                        "label": y_val})
    y_test = rng.integers(0, 2, 300)
    test = pd.DataFrame({"logit": rng.normal(0, 3, 300) + (2 * y_test - 1), "label": y_test})
    val.to_csv(tmp_path / "val.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "cal"
    assert main(["calibrate", "--predictions", str(tmp_path / "test.csv"), "--val", str(tmp_path / "val.csv"),
                 "--out", str(out), "--n-boot", "50", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    check = metrics["calibration_check"]
    assert check["verdict"] == "not fitted" and check["recommended"] == "uncalibrated"
    assert metrics["calibrator"]["temperature"] == 1.0
    page = (out / "report.html").read_text()
    assert "Calibration could not be fitted: the model separates the validation rows perfectly" in page
    assert "What you can do" in page and "T = 1.0000 (" not in page
    assert "the calibrator could not be fitted" in capsys.readouterr().err
    # every interval of the run that does not hold its estimate strictly inside carries its reason
    found = list(_walk_intervals(metrics))
    assert len(found) > 30
    for where, ci in found:
        inside = ci["low"] < ci["estimate"] < ci["high"]
        assert inside or ci["note"], where
        assert ci["interval"] in ("bca", "percentile")


def test_clinical_table_uses_the_same_rows_before_and_after_and_names_the_others(tmp_path):
    rng = np.random.default_rng(1)
    n = 400
    y = rng.integers(0, 2, n)
    logit = rng.normal(0, 1.5, n) + (2 * y - 1)
    logit[[5, 17]] = [60.0, -800.0]  # P = exactly 1 and 0 in float64: no finite logit (both test rows)
    frame = pd.DataFrame({"logit": logit, "label": y, "split": np.where(np.arange(n) % 2 == 0, "val", "test")})
    frame.to_csv(tmp_path / "p.csv", index=False)
    out = tmp_path / "cal"
    assert main(["calibrate", "--predictions", str(tmp_path / "p.csv"), "--out", str(out), "--n-boot", "30",
                 "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    note = metrics["uncalibrated"]["clinical"]["notes"][0]
    assert note.startswith("2 of 200 test rows have a probability of exactly 0 or 1") and "row 5, row 17" in note
    from medloss.calibration import clinical_calibration

    test = frame[frame.split == "test"].drop(index=[5, 17])
    p = 1.0 / (1.0 + np.exp(-test.logit.to_numpy()))
    expected = clinical_calibration(p, test.label.to_numpy())
    assert metrics["uncalibrated"]["clinical"]["metrics"]["slope"]["estimate"] == pytest.approx(expected["slope"])
    assert "deleted from the logistic" not in (out / "report.html").read_text()


def test_cjk_class_names_render_or_are_noted_and_glyph_warnings_stay_off_the_terminal(tmp_path, capfd):
    import warnings

    from matplotlib import font_manager

    from medloss.workflow.report import CJK_FONTS, MISSING_GLYPHS

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=240), "b": rng.normal(size=240)})
    df["y"] = np.where(df.a + rng.normal(0, 0.8, 240) > 0, "恶性", "良性")  # malignant / benign
    df.to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["train", "--data", str(tmp_path / "d.csv"), "--target", "y", "--out", str(out), "--epochs", "5",
                     "--n-boot", "20", "--no-progress"]) == 0
    assert not [w for w in caught if "missing from font" in str(w.message)]
    assert "missing from font" not in capfd.readouterr().err
    page = (out / "report.html").read_text(encoding="utf-8")
    has_cjk_font = any(f.name in CJK_FONTS for f in font_manager.fontManager.ttflist)
    assert (MISSING_GLYPHS in page) == (not has_cjk_font)  # drawn with an installed CJK font, or said why not
