"""Ordinal metrics against scikit-learn and SciPy (ties included) and hand-worked examples."""

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import cohen_kappa_score, confusion_matrix
from sklearn.metrics import mean_absolute_error as sk_mae

from medloss.metrics import (
    accuracy,
    kendall_tau,
    mean_absolute_error,
    ordinal_confusion_matrix,
    quadratic_weighted_kappa,
    sensitivity_specificity,
    spearman_rho,
    within_k_accuracy,
)


def graded(seed, n=300, k=5):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, k, n)
    p = np.clip(t + rng.integers(-2, 3, n), 0, k - 1)
    return t, p


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_scikit_learn_and_scipy(seed):
    t, p = graded(seed)
    labels = list(range(5))
    assert quadratic_weighted_kappa(p, t, 5) == pytest.approx(cohen_kappa_score(t, p, weights="quadratic", labels=labels), abs=1e-12)
    assert quadratic_weighted_kappa(p, t, 5, weights="linear") == pytest.approx(cohen_kappa_score(t, p, weights="linear", labels=labels), abs=1e-12)
    assert mean_absolute_error(p, t) == pytest.approx(sk_mae(t, p), abs=1e-12)
    assert kendall_tau(p, t) == pytest.approx(stats.kendalltau(t, p, variant="b").statistic, abs=1e-12)
    assert spearman_rho(p, t) == pytest.approx(stats.spearmanr(t, p).statistic, abs=1e-12)
    np.testing.assert_array_equal(ordinal_confusion_matrix(p, labels=t, num_classes=5), confusion_matrix(t, p, labels=labels))
    assert accuracy(p, t) == pytest.approx(np.mean(t == p))
    assert within_k_accuracy(p, t, 1) == pytest.approx(np.mean(np.abs(t - p) <= 1))


def test_absent_grades_use_grade_values_not_positions():
    # grades 0..4 with grades 2 and 3 absent from the fold (the dlordinal pitfall)
    t = np.array([0, 1, 4, 4, 0, 1])
    p = np.array([1, 4, 1, 0, 0, 1])
    assert mean_absolute_error(p, t, 5) == pytest.approx((1 + 3 + 3 + 4 + 0 + 0) / 6)
    assert within_k_accuracy(p, t, 1, 5) == pytest.approx(3 / 6)
    assert ordinal_confusion_matrix(p, labels=t, num_classes=5).shape == (5, 5)
    labels = list(range(5))
    qwk = quadratic_weighted_kappa(p, t, 5)
    assert qwk == pytest.approx(cohen_kappa_score(t, p, weights="quadratic", labels=labels), abs=1e-12)
    # without labels=, scikit-learn re-indexes the present grades 0, 1, 4 as 0, 1, 2 and so differs
    assert abs(qwk - cohen_kappa_score(t, p, weights="quadratic")) > 0.05


def test_ties_and_torch_inputs():
    t = torch.tensor([0, 0, 1, 1, 2, 2, 2, 3])
    p = torch.tensor([0, 1, 1, 1, 2, 3, 3, 3])
    assert kendall_tau(p, t) == pytest.approx(stats.kendalltau(t.numpy(), p.numpy()).statistic)
    assert spearman_rho(p, t) == pytest.approx(stats.spearmanr(t.numpy(), p.numpy()).statistic)
    assert quadratic_weighted_kappa(p, t) == pytest.approx(cohen_kappa_score(t.numpy(), p.numpy(), weights="quadratic"))


def test_sensitivity_specificity_hand_example():
    t = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    p = np.array([0, 1, 1, 2, 2, 2, 2, 3])
    out = sensitivity_specificity(p, labels=t, num_classes=4)
    g = out["per_grade"]
    assert g["grade"] == [0, 1, 2, 3]
    # grade 2: TP 2 (both 2s), FN 0, FP 2 (a 1 and a 3 called 2), TN 4
    assert g["sensitivity"][2] == pytest.approx(1.0) and g["specificity"][2] == pytest.approx(4 / 6)
    assert g["positives"][2] == 2 and g["negatives"][2] == 6
    th = out["threshold"]
    assert th["threshold"] == [1, 2, 3]
    # ">= 2": true positives {2,2,3,3} all predicted >= 2 -> sens 1; negatives {0,0,1,1}: one 1 -> 2 -> spec 3/4
    assert th["sensitivity"][1] == pytest.approx(1.0) and th["specificity"][1] == pytest.approx(0.75)
    # ">= 3": positives {3, 3}: one predicted 2 -> sens .5; negatives: none predicted 3 -> spec 1
    assert th["sensitivity"][2] == pytest.approx(0.5) and th["specificity"][2] == pytest.approx(1.0)
    # an absent grade has undefined sensitivity (NaN), not an error
    absent = sensitivity_specificity([0, 1, 2], labels=[0, 0, 2], num_classes=4)
    assert np.isnan(absent["per_grade"]["sensitivity"][3])


def test_undefined_values_are_nan_with_a_warning():
    with pytest.warns(UserWarning, match="undefined"):
        assert np.isnan(quadratic_weighted_kappa([1, 1, 1], [1, 1, 1], 3))
    with pytest.warns(UserWarning, match="constant"):
        assert np.isnan(kendall_tau([0, 1, 2], [1, 1, 1]))


BAD = [
    ("length mismatch", lambda: mean_absolute_error([0], [0, 1]), ValueError, r"same length.*1 and 2"),
    ("negative grade", lambda: mean_absolute_error([0, 1], [0, -1]), ValueError, r">= 0"),
    ("grade >= num_classes", lambda: quadratic_weighted_kappa([0, 1], [0, 5], 5), ValueError, r"\[0, 4\].*num_classes=5"),
    ("non-integer grades", lambda: mean_absolute_error([0, 1], [0.5, 1.0]), TypeError, r"labels.*integer"),
    ("empty", lambda: mean_absolute_error([], []), ValueError, r"empty"),
    ("2-D input", lambda: mean_absolute_error(np.zeros((2, 2), dtype=int), np.zeros((2, 2), dtype=int)), ValueError, r"1-D"),
    ("bad weights", lambda: quadratic_weighted_kappa([0, 1], [0, 1], weights="cubic"), ValueError, r"weights"),
    ("negative k", lambda: within_k_accuracy([0, 1], [0, 1], k=-1), ValueError, r"k.*>= 0"),
]


@pytest.mark.parametrize("desc,call,exc,pattern", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs(desc, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_prediction_first_and_the_old_spellings():
    t, p = graded(5, n=60, k=4)
    expected = confusion_matrix(t, p, labels=range(4))  # rows = truth
    # new order: preds first; passing labels by keyword is silent
    import warnings as w
    with w.catch_warnings():
        w.simplefilter("error")
        np.testing.assert_array_equal(ordinal_confusion_matrix(p, labels=t, num_classes=4), expected)
        assert mean_absolute_error(p, t) == pytest.approx(sk_mae(t, p))
    # both by position, where the order changes the value: a FutureWarning about the order
    with pytest.warns(FutureWarning, match=r"prediction first.*\(preds, labels\), was \(y_true, y_pred\)"):
        np.testing.assert_array_equal(ordinal_confusion_matrix(p, t, 4), expected)
    with pytest.warns(FutureWarning, match=r"labels="):
        sensitivity_specificity(p, t, 4)
    # the old keywords keep working one release, naming the new ones
    with pytest.warns(FutureWarning, match=r"y_true=.*pass `labels`"):
        np.testing.assert_array_equal(ordinal_confusion_matrix(p, y_true=t, num_classes=4), expected)
    with pytest.warns(FutureWarning, match=r"y_pred=.*pass `preds`"):
        assert quadratic_weighted_kappa(y_pred=p, labels=t, num_classes=4) == pytest.approx(
            cohen_kappa_score(t, p, weights="quadratic", labels=range(4)), abs=1e-12)
    with pytest.raises(TypeError, match=r"got `y_true` and `labels`"):
        mean_absolute_error(p, labels=t, y_true=t)


def test_sensitivity_is_taken_over_the_true_positives():
    # one true grade-1 sample predicted 1, three true grade-0 samples, two of them predicted 1:
    # sensitivity of grade 1 = 1/1, its positive predictive value 1/3 (what a swapped call would report)
    r = sensitivity_specificity([1, 1, 1, 0], labels=[1, 0, 0, 0], num_classes=2)["per_grade"]
    assert r["sensitivity"][1] == pytest.approx(1.0) and r["specificity"][1] == pytest.approx(1 / 3)
