"""Calibration of ordinal (severity grade) predictions: the calibration error of every cumulative
probability ``P(grade >= k)``, and temperature scaling of cumulative link models on their latent
scale, solved exactly."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from .._validation import as_tensor, check_choice, check_float_tensor, check_int, fmt_shape
from ..losses.ordinal import LINKS, _log_interval_probability
from .calibrators import (
    _Calibrator,
    _check_fit_labels,
    _fit_inverse_temperature,
    _register_calibrator,
    _saved_array,
    _saved_field,
    _saved_number,
)
from .metrics import BINNINGS, NORMS, expected_calibration_error


def ordinal_calibration_error(
    probs: Any, grades: Any, *, n_bins: int = 15, binning: str = "uniform", norm: str = "l1"
) -> dict[str, Any]:
    r"""Calibration error of each cumulative probability ``P(grade >= k) = sum_{j >= k} p_j``
    against ``1[grade >= k]``, for ``k = 1 .. K - 1``, and their mean.

    A severity model is read through thresholds ("moderate or worse"); each threshold is a binary
    prediction whose reliability matters on its own. The per-threshold values are the binary ECE of
    :func:`expected_calibration_error` (same bins and norms).

    Args:
        probs: ``[N, K]`` grade probabilities (rows on the simplex).
        grades: ``[N]`` integer grades in ``[0, K)``.
        n_bins, binning, norm: as :func:`expected_calibration_error`.

    Returns:
        ``{"thresholds": [1, ..., K - 1], "per_threshold": [...], "mean": float}``.

    Raises:
        ValueError / TypeError: as :func:`expected_calibration_error`; ``probs`` must have K >= 2 columns.

    Examples:
        >>> probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]], dtype=torch.float64)
        >>> r = ordinal_calibration_error(probs, torch.tensor([0, 2]), n_bins=10)
        >>> r["thresholds"], [round(v, 4) for v in r["per_threshold"]], round(r["mean"], 4)  # hand: below
        ([1, 2], [0.2, 0.2], 0.2)

    (``P(grade >= 1)`` = 0.3 and 0.9 for outcomes 0 and 1: gaps 0.3 and 0.1, mean 0.2;
    ``P(grade >= 2)`` = 0.1 and 0.7: gaps 0.1 and 0.3.)
    """
    check_choice(binning, "binning", BINNINGS)
    check_choice(norm, "norm", NORMS)
    p = as_tensor(probs, "probs")
    check_float_tensor(p, "probs")
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"`probs` must be [N, K] grade probabilities with K >= 2; got {fmt_shape(p.shape)}")
    y = as_tensor(grades, "grades").long()
    expected_calibration_error(p, y, n_bins=n_bins, binning=binning, norm=norm)  # validates both inputs
    survival = p.flip(1).cumsum(1).flip(1).clamp(0.0, 1.0).contiguous()  # P(grade >= k)
    per = [
        expected_calibration_error(survival[:, k].contiguous(), (y >= k).long(), n_bins=n_bins, binning=binning,
                                   norm=norm)
        for k in range(1, p.shape[1])
    ]
    return {"thresholds": list(range(1, p.shape[1])), "per_threshold": per, "mean": sum(per) / len(per)}


@_register_calibrator
class OrdinalTemperatureScaler(_Calibrator):
    r"""Temperature scaling of a cumulative link model (:class:`~medloss.losses.CumulativeLinkLoss`)
    on its latent scale: ``P(y <= k) = F((c_k - f) / T)`` for score ``f`` and cutpoints ``c``.

    The NLL is convex in ``beta = 1 / T`` for the logit, probit and complementary log-log links
    (their CDFs are log-concave, so ``log(F(beta b) - F(beta a))`` is concave in ``beta``), and it
    is minimised exactly by the safeguarded Newton iteration of :class:`TemperatureScaler`. The
    grade ordering and the rank of every sample are unchanged; only the spread of the grade
    probabilities is.

    Args:
        cutpoints: the model's ``K - 1`` ordered cutpoints (``loss.cutpoints``; or use :meth:`from_loss`).
        link: ``"logit"`` (default), ``"probit"`` or ``"cloglog"``, as the model's.
        tol, max_passes, t_min, t_max: as :class:`TemperatureScaler`.

    Attributes (after ``fit``): ``temperature_``, ``nll_before_``, ``nll_after_``, ``n_passes_``,
    ``relative_gradient_``, ``converged_``, ``at_bound_``.

    Returns:
        ``fit(scores, grades)`` returns the fitted calibrator; ``transform(scores)`` the calibrated grade
        probabilities ``[N, K]``.

    Raises:
        ValueError: cutpoints not 1-D and increasing, scores not ``[N]`` / ``[N, 1]``, grades outside
            ``[0, K)`` or of a single grade; RuntimeError: use before ``fit``.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> cut = torch.tensor([-2.0, 0.0, 2.0], dtype=torch.float64)
        >>> f = 2 * torch.randn(20000, generator=g, dtype=torch.float64)
        >>> u = torch.rand(20000, generator=g, dtype=torch.float64)
        >>> grades = (torch.logit(u) + f > cut.unsqueeze(1)).sum(0)  # y = #{k: f + logistic noise > c_k}
        >>> cal = OrdinalTemperatureScaler(2 * cut).fit(2 * f, grades)  # a model 2x over-confident
        >>> round(cal.temperature_, 1)
        2.0
    """

    kind = "ordinal_temperature"

    def __init__(
        self, cutpoints: Any, *, link: str = "logit", tol: float = 1e-10, max_passes: int = 50,
        t_min: float = 1e-3, t_max: float = 1e3,
    ) -> None:
        c = as_tensor(cutpoints, "cutpoints").detach().to(torch.float64).flatten()
        if c.numel() < 1 or not bool((c[1:] > c[:-1]).all()) or not bool(torch.isfinite(c).all()):
            raise ValueError(f"`cutpoints` must be finite and strictly increasing; got {c.tolist()}")
        if not (0 < t_min < 1 < t_max):
            raise ValueError(f"need 0 < t_min < 1 < t_max; got t_min={t_min}, t_max={t_max}")
        self.cutpoints = c
        self.link = check_choice(link, "link", LINKS)
        self.tol = float(tol)
        self.max_passes = check_int(max_passes, "max_passes", low=1)
        self.t_min, self.t_max = float(t_min), float(t_max)
        self.n_classes_ = c.numel() + 1
        self.binary_ = False

    @classmethod
    def from_loss(cls, loss: Any, **kwargs: Any) -> OrdinalTemperatureScaler:
        """The scaler of a trained :class:`~medloss.losses.CumulativeLinkLoss` (its cutpoints and link).

        Raises:
            TypeError: ``loss`` is not a cumulative link loss (it has no cutpoints and link).
        """
        cutpoints, link = getattr(loss, "cutpoints", None), getattr(loss, "link", None)
        if not (isinstance(cutpoints, torch.Tensor) and isinstance(link, str)):
            raise TypeError(f"`loss` must be a CumulativeLinkLoss (cutpoints and a link function); got "
                            f"{type(loss).__name__}: temperature-scale other models' logits with TemperatureScaler")
        return cls(loss.cutpoints.detach(), link=loss.link, **kwargs)

    def _scores(self, scores: Any) -> torch.Tensor:
        f = as_tensor(scores, "scores")
        check_float_tensor(f, "scores")
        if f.ndim == 2 and f.shape[1] == 1:
            f = f[:, 0]
        if f.ndim != 1 or f.numel() == 0:
            raise ValueError(f"`scores` must be [N] or [N, 1] latent scores; got {fmt_shape(f.shape)}")
        return f.detach().to(torch.float64)

    def _log_probabilities(self, f: torch.Tensor, beta: torch.Tensor | float) -> torch.Tensor:
        c = self.cutpoints.to(f.device)
        padded = torch.cat([c[:1] - 1.0, c, c[-1:] + 1.0])
        a = (padded[:-1].unsqueeze(0) - f.unsqueeze(1)) * beta
        b = (padded[1:].unsqueeze(0) - f.unsqueeze(1)) * beta
        k = torch.arange(self.n_classes_, device=f.device)
        return _log_interval_probability(a, b, k == 0, k == self.n_classes_ - 1, self.link)

    def _derivatives(self, f: torch.Tensor, y: torch.Tensor, beta: float) -> tuple[float, float, float]:
        b = torch.tensor(beta, dtype=torch.float64, requires_grad=True)
        nll = -self._log_probabilities(f, b).gather(1, y.unsqueeze(1)).mean()
        (g,) = torch.autograd.grad(nll, b, create_graph=True)
        (h,) = torch.autograd.grad(g, b)
        return float(nll.detach()), float(g.detach()), float(h)

    def fit(self, scores: Any, grades: Any) -> OrdinalTemperatureScaler:
        """Fit T on validation latent scores ``[N]`` and grades ``[N]``."""
        f = self._scores(scores)
        y = as_tensor(grades, "grades").long().flatten()
        if y.shape[0] != f.shape[0]:
            raise ValueError(f"`grades` must have one entry per score ({f.shape[0]}); got {y.shape[0]}")
        if bool((y < 0).any()) or bool((y >= self.n_classes_).any()):
            raise ValueError(f"`grades` must lie in [0, {self.n_classes_}) for {self.n_classes_ - 1} cutpoints")
        _check_fit_labels(y, self.n_classes_)
        beta, f_opt, rel, passes, self.at_bound_, self.nll_before_ = _fit_inverse_temperature(
            lambda beta: self._derivatives(f, y, beta), tol=self.tol, max_passes=self.max_passes,
            t_min=self.t_min, t_max=self.t_max)
        self.diverged_ = f_opt < 1e-12
        if self.diverged_:
            warnings.warn(f"OrdinalTemperatureScaler did not converge: the validation NLL is ~0 at T = {1 / beta:g} "
                          "(the grades are separable by the scores), so converged_ is False. Use a larger validation "
                          "set.", RuntimeWarning, stacklevel=2)
        elif self.at_bound_:
            warnings.warn(f"the NLL-optimal temperature lies outside [{self.t_min}, {self.t_max}]; using "
                          f"T = {1 / beta:g}", stacklevel=2)
        self.temperature_, self.nll_after_, self.n_passes_ = 1.0 / beta, f_opt, passes
        self.relative_gradient_ = rel
        self.converged_ = rel <= self.tol and not self.diverged_ and not self.at_bound_
        self.fitted_ = True
        return self

    def transform(self, scores: Any) -> torch.Tensor:
        """Calibrated log grade probabilities ``[N, K]`` (``predict_proba`` is their exponential)."""
        self._check_fitted()
        return self._log_probabilities(self._scores(scores), 1.0 / self.temperature_)

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature_, "cutpoints": self.cutpoints.tolist(), "link": self.link,
                "nll_before": self.nll_before_, "nll_after": self.nll_after_, "n_passes": self.n_passes_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OrdinalTemperatureScaler:
        owner = cls.__name__
        cutpoints = _saved_array(_saved_field(d, "cutpoints", owner), "cutpoints", owner)
        obj = cls(cutpoints, link=_saved_field(d, "link", owner))  # the constructor checks order and link
        obj.temperature_ = _saved_number(d, "temperature", owner, positive=True)
        obj.nll_before_, obj.nll_after_, obj.n_passes_ = d.get("nll_before"), d.get("nll_after"), d.get("n_passes")
        obj.fitted_ = True
        return obj


__all__ = ["OrdinalTemperatureScaler", "ordinal_calibration_error"]
