"""Split conformal prediction sets (SPEC 11): the finite-sample quantile against NumPy,
marginal coverage over many random calibration / test splits, contiguity of the ordinal sets, the
known reductions (a perfect classifier gives singletons; at the smallest alpha APS sets are full),
and bad input."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from medloss.calibration import ConformalClassifier, ConformalOrdinal, conformal_quantile


@pytest.mark.parametrize("n,alpha", [(19, 0.1), (100, 0.05), (101, 0.2), (1000, 0.01), (9, 0.1)])
def test_quantile_is_the_higher_empirical_quantile(n, alpha):
    scores = torch.rand(n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    level = math.ceil((n + 1) * (1 - alpha)) / n
    # the empirical quantile at that level: the inverse of the empirical CDF
    expected = np.quantile(scores.numpy(), level, method="inverted_cdf")
    assert conformal_quantile(scores, alpha).item() == expected


def _population(n, k, seed, temperature=1.0):
    """Samples whose labels follow softmax(logits); the model reports softmax(logits / temperature)."""
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(n, k, generator=g, dtype=torch.float64)
    labels = torch.multinomial(logits.softmax(1), 1, generator=g).squeeze(1)
    return (logits / temperature).softmax(1), labels


@pytest.mark.parametrize("make", [lambda a: ConformalClassifier(a, "lac"), lambda a: ConformalClassifier(a, "aps"),
                                  lambda a: ConformalClassifier(a, "raps", lam=0.05, k_reg=1),
                                  lambda a: ConformalOrdinal(a)], ids=["lac", "aps", "raps", "ordinal"])
@pytest.mark.parametrize("temperature", [1.0, 0.4])  # calibrated and over-confident models alike
def test_marginal_coverage_over_random_splits(make, temperature):
    alpha, n_cal = 0.1, 400
    probs, labels = _population(3000, 5, seed=1, temperature=temperature)
    coverages = []
    for split in range(100):
        perm = torch.randperm(3000, generator=torch.Generator().manual_seed(split))
        cal, test = perm[:n_cal], perm[n_cal:]
        cp = make(alpha).fit(probs[cal], labels[cal])
        coverages.append(cp.evaluate(probs[test], labels[test])["coverage"])
    mean = float(np.mean(coverages))
    # E[coverage] >= 1 - alpha (and <= 1 - alpha + 1 / (n + 1) for continuous LAC scores); the mean of 100
    # splits of 2600 test samples has a standard error ~0.002
    assert mean >= 1 - alpha - 0.006, mean
    assert mean <= 1 - alpha + 1 / (n_cal + 1) + 0.03, mean


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=2, max_value=9), st.integers(min_value=0, max_value=10_000))
def test_ordinal_sets_are_contiguous_and_hold_the_most_likely_grade(k, seed):
    probs, labels = _population(300, k, seed=seed, temperature=1.5)
    sets = ConformalOrdinal(0.2).fit(probs[:150], labels[:150]).predict_sets(probs[150:])
    for row, p in zip(sets, probs[150:], strict=True):
        inside = torch.nonzero(row).flatten()
        assert inside.numel() >= 1 and row[p.argmax()]
        assert int(inside.max() - inside.min()) + 1 == inside.numel()  # no gap


@pytest.mark.parametrize("make", [lambda: ConformalClassifier(0.1, "lac"), lambda: ConformalClassifier(0.1, "aps"),
                                  lambda: ConformalClassifier(0.1, "raps"), lambda: ConformalOrdinal(0.1)],
                         ids=["lac", "aps", "raps", "ordinal"])
def test_a_perfect_classifier_gets_singletons(make):
    labels = torch.randint(0, 4, (200,), generator=torch.Generator().manual_seed(2))
    probs = torch.nn.functional.one_hot(labels, 4).double()
    sets = make().fit(probs[:100], labels[:100]).predict_sets(probs[100:])
    assert torch.equal(sets, probs[100:].bool())


@pytest.mark.parametrize("method", ["lac", "aps"])
def test_at_the_smallest_alpha_sets_are_full(method):
    # alpha = 1 / (n + 1) takes the largest calibration score; one calibration sample whose true class had
    # probability 0 scores 1 (LAC: 1 - 0; APS: all the mass ranked above it), so every set holds every class
    probs, labels = _population(500, 5, seed=3, temperature=2.0)
    n = 200
    probs, labels = probs.clone(), labels.clone()
    probs[0] = torch.tensor([0.5, 0.5, 0.0, 0.0, 0.0], dtype=torch.float64)
    labels[0] = 4
    cp = ConformalClassifier(1 / (n + 1), method).fit(probs[:n], labels[:n])
    assert cp.quantile_.item() == pytest.approx(1.0)
    assert bool(cp.predict_sets(probs[n:]).all())
    # and sets only grow as alpha decreases
    small = ConformalClassifier(0.05, method).fit(probs[:n], labels[:n]).predict_sets(probs[n:])
    large = ConformalClassifier(0.3, method).fit(probs[:n], labels[:n]).predict_sets(probs[n:])
    assert bool((small | ~large).all())


def test_evaluate_reports_per_class_coverage_and_size():
    probs, labels = _population(2000, 3, seed=4)
    report = ConformalClassifier(0.2, "lac").fit(probs[:1000], labels[:1000]).evaluate(probs[1000:], labels[1000:])
    sets = ConformalClassifier(0.2, "lac").fit(probs[:1000], labels[:1000]).predict_sets(probs[1000:])
    y = labels[1000:]
    for k in range(3):
        rows = y == k
        assert report["per_class"][k]["n"] == int(rows.sum())
        assert report["per_class"][k]["coverage"] == pytest.approx(float(sets[rows, k].double().mean()))
        assert report["per_class"][k]["mean_set_size"] == pytest.approx(float(sets[rows].sum(1).double().mean()))


BAD = [
    ("alpha 0", lambda: ConformalClassifier(0.0), ValueError, r"alpha"),
    ("alpha 1", lambda: ConformalOrdinal(1.0), ValueError, r"alpha"),
    ("unknown method", lambda: ConformalClassifier(0.1, "bayes"), ValueError, r"method"),
    ("too few samples",
     lambda: ConformalClassifier(0.01).fit(torch.full((50, 2), 0.5), torch.zeros(50, dtype=torch.long)),
     ValueError, r"needs at least 99 calibration samples.*n = 50"),
    ("unfitted", lambda: ConformalClassifier(0.1).predict_sets(torch.full((3, 2), 0.5)), RuntimeError, r"not fitted"),
]


@pytest.mark.parametrize("desc,call,exc,pattern", BAD, ids=[b[0] for b in BAD])
def test_bad_input(desc, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_class_count_mismatch():
    probs, labels = _population(200, 3, seed=5)
    cp = ConformalClassifier(0.1).fit(probs, labels)
    with pytest.raises(ValueError, match=r"4 classes but the ConformalClassifier was fitted on 3"):
        cp.predict_sets(torch.full((2, 4), 0.25))


def _split_coverages(make, n_cal=400, splits=100, temperature=1.0):
    probs, labels = _population(3000, 5, seed=1, temperature=temperature)
    coverages, sizes = [], []
    for split in range(splits):
        perm = torch.randperm(3000, generator=torch.Generator().manual_seed(split))
        cal, test = perm[:n_cal], perm[n_cal:]
        report = make(split).fit(probs[cal], labels[cal]).evaluate(probs[test], labels[test])
        coverages.append(report["coverage"])
        sizes.append(report["mean_set_size"])
    return float(np.mean(coverages)), float(np.mean(sizes))


@pytest.mark.parametrize("method", ["aps", "raps"])
def test_randomized_sets_cover_exactly(method):
    """Randomised APS / RAPS (U ~ Uniform(0, 1) per sample): E[coverage] in [1 - alpha, 1 - alpha + 1 / (n + 1)],
    as for the deterministic U = 0 score (continuous too). Over 100 random splits the mean's standard error is
    ~0.002."""
    alpha, n_cal = 0.1, 400
    kwargs = {"lam": 0.05, "k_reg": 1} if method == "raps" else {}
    bounds = (1 - alpha - 0.006, 1 - alpha + 1 / (n_cal + 1) + 0.006)
    rand_cov, _ = _split_coverages(lambda s: ConformalClassifier(alpha, method, randomized=True, seed=s, **kwargs))
    det_cov, _ = _split_coverages(lambda s: ConformalClassifier(alpha, method, **kwargs))
    assert bounds[0] <= rand_cov <= bounds[1] and bounds[0] <= det_cov <= bounds[1], (rand_cov, det_cov)



def test_raps_parameters_are_chosen_on_a_held_out_part():
    probs, labels = _population(1000, 6, seed=4, temperature=0.6)
    cp = ConformalClassifier(0.1, "raps", seed=7).fit(probs, labels)
    # the same tuning rows, reconstructed: 30 % of a seeded permutation
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(7))
    tune = order[:300].numpy()
    ranks = 1 + np.argsort(np.argsort(-probs.numpy()[tune], axis=1, kind="stable"), axis=1, kind="stable")
    true_rank = ranks[np.arange(300), labels.numpy()[tune]]
    assert cp.k_reg_ == int(np.quantile(true_rank, 0.9, method="higher"))
    assert cp.n_calibration_ == 700  # the quantile is taken on the other rows only
    sizes = {lam: ConformalClassifier(0.1, "raps", lam=lam, k_reg=cp.k_reg_).fit(probs[tune], labels[tune])
             .evaluate(probs[tune], labels[tune])["mean_set_size"] for lam in (0.001, 0.01, 0.1, 0.2, 0.5)}
    assert cp.lam_ == min(sizes, key=sizes.get)
    # and the guarantee holds with the tuned parameters
    cov, _ = _split_coverages(lambda s: ConformalClassifier(0.1, "raps", seed=s), n_cal=600, splits=60)
    assert cov >= 0.9 - 0.008, cov


def test_several_alphas_give_nested_sets_and_the_single_alpha_quantiles():
    probs, labels = _population(2000, 5, seed=3)
    for method, kwargs in (("lac", {}), ("aps", {"randomized": True}), ("raps", {"lam": 0.05, "k_reg": 2})):
        alphas = [0.05, 0.1, 0.3]
        many = ConformalClassifier(alphas, method, **kwargs).fit(probs[:1000], labels[:1000])
        for i, a in enumerate(alphas):
            one = ConformalClassifier(a, method, **kwargs).fit(probs[:1000], labels[:1000])
            assert many.quantile_[i] == one.quantile_
            assert torch.equal(many.predict_sets(probs[1000:])[i], one.predict_sets(probs[1000:]))
        sets = many.predict_sets(probs[1000:])
        assert bool((sets[2] <= sets[1]).all() and (sets[1] <= sets[0]).all())  # nested
        reports = many.evaluate(probs[1000:], labels[1000:])
        assert list(reports) == alphas and reports[0.05]["coverage"] >= reports[0.3]["coverage"]
    with pytest.raises(ValueError, match="randomized=True` applies to method 'aps' or 'raps'"):
        ConformalClassifier(0.1, "lac", randomized=True)
