r"""Split conformal prediction sets with a finite-sample coverage guarantee.

Fit on a calibration (validation) split of ``n`` samples: every sample gets a nonconformity
score ``s(x, y)`` of its true label, and ``q`` is the empirical quantile of the scores at level
``ceil((n + 1)(1 - alpha)) / n``, i.e. the ``ceil((n + 1)(1 - alpha))``-th smallest score (the
inverse of the empirical CDF; NumPy's ``method="higher"``, used in some tutorials, is one order
statistic more conservative for most ``n``). For a new sample exchangeable with the calibration
ones, the set of labels whose score does not exceed ``q`` contains the true label with probability
at least ``1 - alpha`` (Vovk et al. 2005; Angelopoulos & Bates 2021).

- ``method="lac"`` (Sadinle et al. 2019): ``s = 1 - p_y``; the smallest sets on average.
- ``method="aps"`` (Romano et al. 2020): ``s`` = probability mass of the classes ranked above ``y``
  (their randomised score with ``U = 0``); a set takes classes in order of probability while the
  mass before them is at most ``q``, so it adapts to how hard a sample is.
- ``method="raps"`` (Angelopoulos et al. 2021): APS plus ``lam * max(0, rank(y) - k_reg)``, which
  keeps the sets of confident samples small.
- :class:`ConformalOrdinal` (Lu, Angelopoulos et al. 2022): contiguous intervals of grades, grown
  from the most likely grade towards the more likely neighbour; ``s`` = the interval's mass just
  before ``y`` joins it.

By default the sets are deterministic: the APS score is Romano et al.'s randomised score at ``U = 0`` (the
mass strictly before the label), continuous for continuous probabilities, so the coverage is ``1 - alpha``
up to ``1 / (n + 1)`` (at least ``1 - alpha`` with ties). ``randomized=True`` (APS / RAPS) draws
``U ~ Uniform(0, 1)`` per sample and adds ``U p_y`` (MAPIE's ``include_last_label="randomized"``), the
same guarantee, for parity with MAPIE and Romano et al.; on the tests' benchmark its sets are slightly larger
than the ``U = 0`` ones (2.31 vs 2.17 classes at alpha 0.1, 5 classes). A classifier whose probabilities
are one-hot and right gets singletons (deterministic sets).

RAPS's ``lam`` and ``k_reg`` are chosen on a held-out part of the calibration rows when not given,
as the official code does (``pct_paramtune = 0.3``, rows drawn with ``seed``): ``k_reg`` is the
``1 - alpha`` quantile (``"higher"``) of the true class's rank (1 = most likely), and ``lam`` the value of
``(0.001, 0.01, 0.1, 0.2, 0.5)`` whose sets are smallest on that part; the conformal quantile is then taken
on the other rows only, so the guarantee holds. Several ``alpha`` at once (a sequence) give nested sets
from one fit.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .._validation import check_choice, check_number
from ._inputs import as_probs_labels

METHODS = ("lac", "aps", "raps")


def conformal_quantile(scores: torch.Tensor, alpha: float) -> torch.Tensor:
    """The ``ceil((n + 1)(1 - alpha))``-th smallest score: the finite-sample conformal quantile.

    Args:
        scores: the nonconformity scores of the calibration samples (any shape; flattened).
        alpha: the miscoverage level, e.g. 0.1 for 90 % sets.

    Returns:
        The quantile, a 0-d tensor of the scores' dtype.

    Raises:
        ValueError: ``n < 1 / alpha - 1`` (the message names the number of samples needed): then no order
            statistic guarantees the coverage and the set would have to be every label.

    Examples:
        >>> conformal_quantile(torch.arange(1.0, 20.0), alpha=0.1)  # n = 19: the 18th smallest
        tensor(18.)
    """
    n = scores.numel()
    rank = math.ceil((n + 1) * (1.0 - alpha) - 1e-12)  # the epsilon absorbs (n + 1)(1 - alpha) landing on an integer
    if rank > n:
        needed = math.ceil(1.0 / alpha - 1.0 - 1e-12)
        raise ValueError(
            f"alpha={alpha:g} needs at least {needed} calibration samples for a finite conformal quantile "
            f"(ceil((n + 1)(1 - alpha)) <= n); got n = {n}. Use more calibration data or a larger alpha."
        )
    return torch.kthvalue(scores.flatten(), rank).values


def _sorted_cumulative(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row: the class order by decreasing probability (ties: lower index first), the rank of
    every class (1 = most likely) and the mass strictly before each class in that order."""
    order = torch.sort(p, dim=1, descending=True, stable=True).indices
    sorted_p = p.gather(1, order)
    before_sorted = sorted_p.cumsum(1) - sorted_p
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(1, p.shape[1] + 1, device=p.device).expand_as(order))
    before = torch.empty_like(p)
    before.scatter_(1, order, before_sorted)
    return order, ranks, before


#: RAPS's lam values tried on the tuning rows, and their share of the calibration rows (the official code's)
LAMBDA_GRID = (0.001, 0.01, 0.1, 0.2, 0.5)
TUNING_SHARE = 0.3


def _alphas(alpha: Any) -> tuple[float, ...]:
    values = alpha if isinstance(alpha, (list, tuple)) else [alpha]
    if not values:
        raise ValueError("`alpha` must be a number in (0, 1) or a non-empty sequence of them")
    return tuple(check_number(a, "alpha", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
                 for a in values)


class ConformalClassifier:
    r"""Prediction sets that contain the true class with probability ``>= 1 - alpha``.

    Args:
        alpha: the miscoverage level in (0, 1), e.g. 0.1 for 90 % sets, or a sequence of levels (nested
            sets from one fit; ``predict_sets`` then stacks them ``[A, N, K]``).
        method: ``"lac"``, ``"aps"`` (default) or ``"raps"`` (module docstring).
        lam, k_reg: RAPS's penalty per rank beyond ``k_reg``; None (default) chooses each on 30 % of the
            calibration rows (module docstring; with several ``alpha``, for the smallest), the quantile then
            taken on the other 70 %.
        randomized: APS / RAPS with the randomised score ``+ U p_y``, ``U ~ Uniform(0, 1)`` (MAPIE's
            convention; default False: the deterministic ``U = 0`` score, module docstring).
        seed: seeds the uniforms of ``randomized`` and RAPS's tuning split (default 0); the same seed gives the
            same sets.

    Attributes (after ``fit``): ``quantile_`` (``[A]`` for several levels), ``n_calibration_``, and for RAPS
    ``lam_``, ``k_reg_`` (given or chosen).

    Returns:
        ``fit(probs, labels)`` returns the fitted predictor; ``predict_sets(probs)`` the prediction sets as a
        boolean ``[N, K]`` mask (``[A, N, K]`` for several levels); ``evaluate(probs, labels)`` their coverage
        and sizes (a dict per level for several).

    Raises:
        ValueError: ``alpha`` outside (0, 1), an unknown method, ``randomized`` with LAC, too few calibration
            samples for ``alpha`` (the message says how many are needed), probabilities of another class count
            than fitted; RuntimeError: use before ``fit``.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> probs = torch.softmax(2 * torch.randn(4000, 5, generator=g), 1)
        >>> labels = torch.multinomial(probs, 1, generator=g).squeeze(1)  # calibrated by construction
        >>> cp = ConformalClassifier(alpha=0.1).fit(probs[:2000], labels[:2000])
        >>> report = cp.evaluate(probs[2000:], labels[2000:])
        >>> bool(report["coverage"] >= 0.88), bool(1 < report["mean_set_size"] < 5)
        (True, True)
        >>> several = ConformalClassifier(alpha=[0.05, 0.2], randomized=True).fit(probs[:2000], labels[:2000])
        >>> sets = several.predict_sets(probs[2000:])  # [2, 2000, 5]: the 95 % sets hold the 80 % ones
        >>> sets.shape, bool((sets[1] <= sets[0]).all())
        (torch.Size([2, 2000, 5]), True)
    """

    def __init__(self, alpha: Any = 0.1, method: str = "aps", *, lam: float | None = None,
                 k_reg: int | None = None, randomized: bool = False, seed: int = 0) -> None:
        self.alphas_ = _alphas(alpha)
        self.alpha = self.alphas_ if isinstance(alpha, (list, tuple)) else self.alphas_[0]
        self.method = check_choice(method, "method", METHODS)
        self.lam = None if lam is None else check_number(lam, "lam", low=0.0)
        self.k_reg = None if k_reg is None else int(check_number(k_reg, "k_reg", low=0.0))
        self.randomized = bool(randomized)
        if self.randomized and self.method == "lac":
            raise ValueError("`randomized=True` applies to method 'aps' or 'raps' (LAC's score has no tie to break)")
        self.seed = int(seed)
        self.lam_, self.k_reg_ = self.lam, self.k_reg

    # the score of every class of every row, [N, K]: calibration reads the true class's, and a set
    # holds the classes whose score is <= q (for APS / RAPS / ordinal a prefix of the class order)
    def _scores(self, p: torch.Tensor, u: torch.Tensor | None = None, lam: float | None = None,
                k_reg: int | None = None) -> torch.Tensor:
        if self.method == "lac":
            return 1.0 - p
        _, ranks, before = _sorted_cumulative(p)
        scores = before if u is None else before + u.unsqueeze(1) * p
        if self.method == "raps":
            lam = self.lam_ if lam is None else lam
            k_reg = self.k_reg_ if k_reg is None else k_reg
            scores = scores + lam * (ranks - k_reg).clamp_min(0)
        return scores

    def _uniforms(self, n: int, offset: int) -> torch.Tensor | None:
        if not self.randomized:
            return None
        return torch.rand(n, generator=torch.Generator().manual_seed(self.seed + offset), dtype=torch.float64)

    @staticmethod
    def _probs(probs: Any, labels: Any | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if labels is None:
            dummy = torch.zeros(len(probs), dtype=torch.long)
            p, _ = as_probs_labels(probs, dummy)
            y = None
        else:
            p, y = as_probs_labels(probs, labels)
        if p.ndim == 1:
            p = torch.stack([1.0 - p, p], 1)
        return p.to(torch.float64), y

    def _tune_raps(self, p: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        """``(lam, k_reg)`` chosen on the tuning rows (module docstring)."""
        alpha = min(self.alphas_)
        k_reg = self.k_reg
        if k_reg is None:
            _, ranks, _ = _sorted_cumulative(p)
            true_rank = ranks.gather(1, y.unsqueeze(1)).squeeze(1).double()
            k_reg = int(torch.quantile(true_rank, 1.0 - alpha, interpolation="higher"))
        if self.lam is not None:
            return self.lam, k_reg
        u = self._uniforms(p.shape[0], 2)
        sizes = []
        for lam in LAMBDA_GRID:
            scores = self._scores(p, u, lam, k_reg)
            q = conformal_quantile(scores.gather(1, y.unsqueeze(1)).squeeze(1), alpha)
            sizes.append(float((scores <= q).sum(1).double().mean()))
        return LAMBDA_GRID[min(range(len(sizes)), key=sizes.__getitem__)], k_reg

    def fit(self, probs: Any, labels: Any) -> ConformalClassifier:
        """Calibrate on ``probs`` ``[N, K]`` (or ``[N]`` binary) and true ``labels`` ``[N]``."""
        p, y = self._probs(probs, labels)
        assert y is not None
        self.n_classes_ = p.shape[1]
        if self.method == "raps" and (self.lam is None or self.k_reg is None):
            order = torch.randperm(p.shape[0], generator=torch.Generator().manual_seed(self.seed))
            n_tune = round(TUNING_SHARE * p.shape[0])
            tune, rest = order[:n_tune], order[n_tune:]
            self.lam_, self.k_reg_ = self._tune_raps(p[tune], y[tune])
            p, y = p[rest], y[rest]
        true_scores = self._scores(p, self._uniforms(p.shape[0], 0)).gather(1, y.unsqueeze(1)).squeeze(1)
        quantiles = torch.stack([conformal_quantile(true_scores, a) for a in self.alphas_])
        self.quantile_ = quantiles if isinstance(self.alpha, tuple) else quantiles[0]
        self.n_calibration_ = p.shape[0]
        return self

    def _check_fitted(self, p: torch.Tensor) -> None:
        if not hasattr(self, "quantile_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit(probs, labels) first")
        if p.shape[1] != self.n_classes_:
            raise ValueError(f"`probs` have {p.shape[1]} classes but the {type(self).__name__} was fitted on "
                             f"{self.n_classes_}")

    def predict_sets(self, probs: Any) -> torch.Tensor:
        """Boolean ``[N, K]`` (``[A, N, K]`` for several levels): which classes are in each sample's set."""
        p, _ = self._probs(probs)
        self._check_fitted(p)
        scores = self._scores(p, self._uniforms(p.shape[0], 1))
        q = self.quantile_.to(p.device)
        return scores <= q if q.ndim == 0 else scores.unsqueeze(0) <= q.view(-1, 1, 1)

    def _report(self, sets: torch.Tensor, y: torch.Tensor, alpha: float) -> dict[str, Any]:
        covered = sets.gather(1, y.unsqueeze(1)).squeeze(1).double()
        sizes = sets.sum(1).double()
        per_class = {}
        for k in range(sets.shape[1]):
            mask = y == k
            n_k = int(mask.sum())
            per_class[k] = {"n": n_k, "coverage": float(covered[mask].mean()) if n_k else math.nan,
                            "mean_set_size": float(sizes[mask].mean()) if n_k else math.nan}
        return {"alpha": alpha, "target_coverage": 1.0 - alpha, "coverage": float(covered.mean()),
                "mean_set_size": float(sizes.mean()), "empty_sets": int((sizes == 0).sum()),
                "per_class": per_class}

    def evaluate(self, probs: Any, labels: Any) -> dict[Any, Any]:
        """Empirical coverage and set size, overall and per true class, on held-out data (for several
        levels: ``{alpha: report}``)."""
        p, y = self._probs(probs, labels)
        assert y is not None
        sets = self.predict_sets(p)
        if sets.ndim == 2:
            return self._report(sets, y, self.alphas_[0])
        return {a: self._report(s, y, a) for a, s in zip(self.alphas_, sets, strict=True)}


class ConformalOrdinal(ConformalClassifier):
    r"""Contiguous prediction intervals of ordinal grades (Lu, Angelopoulos et al., "Improving trustworthiness
    of AI disease severity rating in medical imaging with ordinal conformal prediction sets", MICCAI 2022).

    From the most likely grade, the interval grows one grade at a time towards the more probable
    neighbour; a grade's score is the interval's mass just before the grade joins it. The set is
    the interval grown while that mass is at most the conformal quantile: always contiguous, and it
    contains the true grade with probability ``>= 1 - alpha``.

    Args:
        alpha: the miscoverage level in (0, 1).

    Returns:
        ``fit(probs, labels)`` returns the fitted predictor; ``predict_sets(probs)`` the contiguous grade sets
        as a boolean ``[N, K]`` mask; ``evaluate(probs, labels)`` their coverage and sizes.

    Raises:
        ValueError / RuntimeError: as :class:`ConformalClassifier`.

    Examples:
        >>> probs = torch.tensor([[0.1, 0.6, 0.2, 0.1], [0.05, 0.05, 0.3, 0.6]])
        >>> cp = ConformalOrdinal(alpha=0.5)
        >>> cp._scores(probs.double())  # mass before each grade joins: grade 1 first, then 2, then 0, then 3
        tensor([[0.8000, 0.0000, 0.6000, 0.9000],
                [0.9500, 0.9000, 0.6000, 0.0000]], dtype=torch.float64)
    """

    def __init__(self, alpha: Any = 0.1) -> None:
        super().__init__(alpha, "aps")
        self.method = "ordinal"

    def _scores(self, p: torch.Tensor, u: torch.Tensor | None = None, lam: float | None = None,
                k_reg: int | None = None) -> torch.Tensor:
        n, k = p.shape
        rows = torch.arange(n, device=p.device)
        lo = hi = p.argmax(1)
        mass = p[rows, lo]
        scores = torch.empty_like(p)
        scores[rows, lo] = 0.0
        minus = torch.full((n,), -1.0, dtype=p.dtype, device=p.device)
        for _ in range(k - 1):
            left = torch.where(lo > 0, p[rows, (lo - 1).clamp_min(0)], minus)
            right = torch.where(hi < k - 1, p[rows, (hi + 1).clamp_max(k - 1)], minus)
            go_right = right > left  # ties grow to the lower grade
            new = torch.where(go_right, hi + 1, lo - 1)
            scores[rows, new] = mass
            mass = mass + torch.where(go_right, right, left)
            lo = torch.where(go_right, lo, new)
            hi = torch.where(go_right, new, hi)
        return scores


#: probability thresholds ConformalSegmentation chooses among (the grid of the risk's step function)
THRESHOLD_GRID = 2000
RISKS = ("fnr",)


class ConformalSegmentation:
    r"""A mask threshold with a guaranteed false-negative rate: conformal risk control (Angelopoulos, Bates,
    Fisch, Lei & Schuster, "Conformal Risk Control", ICLR 2024; arXiv 2022).

    The predicted mask of an image is ``{pixel : p >= t}``. Its false-negative rate is the share of the image's
    lesion pixels left out, ``FNR_i(t) = #{lesion pixels with p < t} / #{lesion pixels}`` (0 for an image
    without lesion), non-increasing as ``t`` falls and bounded by ``B = 1``. On ``n`` calibration images the
    threshold is the largest ``t`` of a grid with

    .. math:: \frac{n}{n + 1} \widehat{R}_n(t) + \frac{B}{n + 1} \le \alpha,\qquad
        \widehat{R}_n(t) = \frac{1}{n} \sum_i \mathrm{FNR}_i(t)

    and then, for a new image exchangeable with them, ``E[FNR] <= alpha`` (the expectation over calibration
    and test images), and ``>= alpha - 2 / (n + 1)`` when no two images share a probability. The guarantee
    is on the mean over images, not on each one. The false-discovery rate is not monotone in ``t``, so
    conformal risk control does not bound it (Learn-then-Test does); only ``risk="fnr"`` is offered.

    Args:
        alpha: the risk level in (0, 1), e.g. 0.1: on average at most 10 % of the lesion pixels missed.
        risk: ``"fnr"`` (default; the only one, above).
        n_thresholds: the thresholds tried, ``t = j / n_thresholds`` (default 2000; ``t = 0`` takes every pixel).

    Attributes (after ``fit``): ``threshold_``, ``n_calibration_``, ``calibration_risk_`` (the mean FNR of the
    calibration images at ``threshold_``).

    Returns:
        ``fit(probs, masks)`` returns the fitted thresholder; ``predict_masks(probs)`` the boolean masks;
        ``evaluate(probs, masks)`` the mean, per-image and worst false-negative rates and the mask sizes.

    Raises:
        ValueError: ``alpha`` outside (0, 1), an unknown ``risk``, ``n < 1 / alpha - 1`` calibration images (no
            threshold can guarantee ``alpha``: the message says how many are needed), probabilities outside
            [0, 1], masks of another shape or not 0 / 1; RuntimeError: use before ``fit``.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> masks = torch.zeros(200, 16, 16, dtype=torch.bool)
        >>> masks[:, 4:10, 5:11] = True                                     # a lesion in every image
        >>> probs = torch.sigmoid(4 * (masks.double() - 0.5) + torch.randn(200, 16, 16, generator=g))
        >>> crc = ConformalSegmentation(alpha=0.1).fit(probs[:100], masks[:100])
        >>> report = crc.evaluate(probs[100:], masks[100:])
        >>> bool(report["mean_fnr"] <= 0.15), bool(0.0 < crc.threshold_ < 1.0)
        (True, True)
    """

    def __init__(self, alpha: float = 0.1, risk: str = "fnr", *, n_thresholds: int = THRESHOLD_GRID) -> None:
        self.alpha = check_number(alpha, "alpha", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
        self.risk = check_choice(risk, "risk", RISKS)
        self.n_thresholds = int(check_number(n_thresholds, "n_thresholds", low=1.0))

    @staticmethod
    def _inputs(probs: Any, masks: Any | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        from .._validation import as_tensor, check_probabilities

        p = as_tensor(probs, "probs")
        if not torch.is_floating_point(p) or p.ndim < 2:
            raise ValueError(f"`probs` must be floating-point lesion probabilities [N, *spatial]; got "
                             f"{p.dtype} {list(p.shape)}")
        check_probabilities(p, "probs")
        p = p.reshape(p.shape[0], -1).to(torch.float64)
        if masks is None:
            return p, None
        m = as_tensor(masks, "masks")
        if m.shape[0] != p.shape[0] or m[0].numel() != p.shape[1]:
            raise ValueError(f"`masks` must have the shape of `probs`; got {list(m.shape)} for {p.shape[0]} images "
                             f"of {p.shape[1]} pixels")
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError("`masks` must hold 0 / 1 (lesion) labels")
        return p, m.reshape(m.shape[0], -1).bool()

    def _fnr_curves(self, p: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """``FNR_i(t_j)`` for every image and threshold ``t_j = j / G``, ``[N, G + 1]``: the lesion pixels' histogram
        over the grid, cumulated (a pixel with ``p < t_j`` lies in a bin below ``j``)."""
        g = self.n_thresholds
        bins = torch.floor(p * g).clamp(0, g).long()  # p < j / g  <=>  floor(p g) < j
        n, size = p.shape
        rows = torch.arange(n).unsqueeze(1).expand(n, size)
        one = torch.ones((), dtype=torch.float64)
        counts = torch.zeros(n, g + 1, dtype=torch.float64).index_put_((rows[m], bins[m]), one, accumulate=True)
        below = torch.cat([torch.zeros(n, 1, dtype=torch.float64), counts.cumsum(1)[:, :-1]], 1)  # p < t_j
        lesion = m.sum(1, keepdim=True).double()
        return torch.where(lesion > 0, below / lesion.clamp_min(1.0), 0.0)

    def fit(self, probs: Any, masks: Any) -> ConformalSegmentation:
        """Choose the threshold on calibration images: ``probs`` ``[N, *]`` lesion probabilities, ``masks`` the
        true lesion masks of the same shape."""
        p, m = self._inputs(probs, masks)
        assert m is not None
        n = p.shape[0]
        needed = math.ceil(1.0 / self.alpha - 1.0 - 1e-12)
        if n < needed:
            raise ValueError(f"alpha={self.alpha:g} needs at least {needed} calibration images (1 / (n + 1) <= "
                             f"alpha); got n = {n}")
        risk = self._fnr_curves(p, m).mean(0)  # non-decreasing in t
        ok = (n * risk + 1.0) / (n + 1.0) <= self.alpha
        j = int(torch.nonzero(ok).max())  # t = 0 always qualifies: FNR 0 there, and 1 / (n + 1) <= alpha
        self.threshold_ = j / self.n_thresholds
        self.calibration_risk_ = float(risk[j])
        self.n_calibration_ = n
        return self

    def predict_masks(self, probs: Any) -> torch.Tensor:
        """Boolean masks ``p >= threshold_`` of the input's shape."""
        if not hasattr(self, "threshold_"):
            raise RuntimeError("this ConformalSegmentation is not fitted yet: call fit(probs, masks) first")
        from .._validation import as_tensor

        p = as_tensor(probs, "probs")
        self._inputs(p)
        return p >= self.threshold_

    def evaluate(self, probs: Any, masks: Any) -> dict[str, Any]:
        """The false-negative rate of the predicted masks on held-out images: mean (what is guaranteed), per image
        (its quantiles), worst, and the share of pixels the masks take."""
        p, m = self._inputs(probs, masks)
        assert m is not None
        pred = self.predict_masks(probs).reshape(p.shape[0], -1)
        lesion = m.sum(1).double()
        missed = (m & ~pred).sum(1).double()
        fnr = torch.where(lesion > 0, missed / lesion.clamp_min(1.0), 0.0)
        return {"alpha": self.alpha, "risk": self.risk, "threshold": self.threshold_, "mean_fnr": float(fnr.mean()),
                "median_fnr": float(fnr.median()), "fnr_90": float(torch.quantile(fnr, 0.9)),
                "max_fnr": float(fnr.max()), "mask_share": float(pred.double().mean()),
                "n_images": p.shape[0], "n_calibration": self.n_calibration_}


__all__ = ["ConformalClassifier", "ConformalOrdinal", "ConformalSegmentation", "conformal_quantile"]
