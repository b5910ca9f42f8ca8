"""Post-hoc calibrators: temperature scaling (solved exactly), Platt scaling, isotonic regression.

Fit them on a validation split, never on the test set you report. All share one API:
``fit(logits, labels)``, ``transform(logits)`` (calibrated logits), ``predict_proba(logits)``,
``save(path)`` / :func:`load_calibrator` (JSON).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from typing import Any

import numpy as np
import torch

from .._distributed import all_reduce_numbers, require_process_group
from .._optional import require
from .._validation import as_tensor, check_class_indices, check_finite, check_float_tensor, check_int, fmt_shape

#: rows processed at once by the temperature solver (bounds its memory to ~100 MB at K = 10)
CHUNK_ROWS = 1 << 20


def _logits_labels(logits: Any, labels: Any | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    z = as_tensor(logits, "logits")
    check_float_tensor(z, "logits")
    if z.ndim == 2 and z.shape[1] == 1:
        z = z[:, 0]
    if z.ndim not in (1, 2):
        raise ValueError(f"`logits` must be [N, K] (multiclass) or [N] (binary, one logit); got {fmt_shape(z.shape)}")
    if z.shape[0] == 0:
        raise ValueError("`logits` is empty")
    check_finite(z, "logits")
    z = z.detach().to(torch.float64)
    if labels is None:
        return z, None
    y = as_tensor(labels, "labels")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != z.shape[0]:
        raise ValueError(
            f"`labels` must be [N] with N = {z.shape[0]} (one per row of logits); got {fmt_shape(y.shape)}"
        )
    if torch.is_floating_point(y):
        if not bool((y == y.round()).all()):
            raise TypeError("`labels` must hold integer class labels")
        y = y.long()
    check_class_indices(y, "labels", 2 if z.ndim == 1 else z.shape[1])
    return z, y


def _check_fit_labels(y: torch.Tensor, n_classes: int) -> None:
    """Labels of one class cannot fit a calibrator (error); absent classes weaken it (warning)."""
    present = torch.unique(y)
    if present.numel() < 2:
        raise ValueError(
            f"`labels` hold a single class ({int(present[0])}): a calibrator fitted on one class cannot calibrate "
            "the others. Fit it on a validation split that contains every class."
        )
    if present.numel() < n_classes:
        missing = sorted(set(range(n_classes)) - set(present.tolist()))
        warnings.warn(
            f"`labels` contain no example of class(es) {missing}: the calibrator is fitted without them and its "
            "probabilities for them are extrapolated. Use a validation split that contains every class.",
            stacklevel=3,
        )


def _check_width(z: torch.Tensor, calibrator: _Calibrator) -> None:
    """Logits given to a fitted calibrator must have the shape it was fitted on."""
    fitted = getattr(calibrator, "n_classes_", None)
    if (z.ndim == 1) != calibrator.binary_ or (fitted is not None and z.ndim == 2 and z.shape[1] != fitted):
        expected = "[N] (one binary logit)" if calibrator.binary_ else f"[N, {fitted}]"
        raise ValueError(
            f"`logits` {fmt_shape(z.shape)} do not match the fitted {type(calibrator).__name__}: expected {expected}"
        )


#: a fit whose validation NLL is below this (nats per sample) and still falls along its own displacement has
#: no minimum: the validation data are separable by the calibrator's features
SEPARABLE_NLL = 1e-3

DIVERGENCE_ADVICE = ("use TemperatureScaler (one parameter, monotone in the logits), regularise "
                     "(DirichletCalibrator(reg_lambda=..., reg_mu=...), or select_calibrator to choose on held-out "
                     "rows), or a larger validation set")


def _diverges(nll_at: Any, start: torch.Tensor, fitted: torch.Tensor, nll_fitted: float) -> bool:
    """Whether the fit runs off to infinity: its NLL is ~0 and keeps falling when the displacement from the start
    is doubled. (A convex NLL with a minimum rises along that line past the fit; on separable data there is no
    minimum, the optimiser stops only because the gradient underflows its tolerance, and the parameters it
    returns are arbitrary: weights of 150-700, test NLL worse than before calibrating.)"""
    if not nll_fitted < SEPARABLE_NLL:
        return False
    with torch.no_grad():
        return float(nll_at(start + 2.0 * (fitted - start))) < nll_fitted


def _warn_divergence(owner: str, nll: float) -> None:
    warnings.warn(f"{owner} did not converge: the validation NLL is {nll:.2g} and keeps decreasing as the parameters "
                  f"grow, so no finite fit exists (the validation data are separable) and converged_ is False: "
                  f"{DIVERGENCE_ADVICE}", RuntimeWarning, stacklevel=3)


def _reject_probabilities(z: torch.Tensor) -> None:
    """Logits that look like probabilities are almost always a mistake (softmax applied twice)."""
    if z.ndim == 2 and float(z.min()) >= 0.0 and float(z.max()) <= 1.0:
        if float((z.sum(1) - 1.0).abs().max()) < 1e-4:
            raise ValueError(
                "`logits` look like probabilities (in [0, 1], rows summing to 1). Calibrators take "
                "logits; pass log(probs) if probabilities are all you have."
            )
    elif z.ndim == 1 and float(z.min()) >= 0.0 and float(z.max()) <= 1.0:
        warnings.warn("`logits` all lie in [0, 1]: are these probabilities? Calibrators expect logits.", stacklevel=3)


# ------------------------------------------------------------------ reading saved calibrators back
def _saved_field(d: Any, key: str, owner: str) -> Any:
    """``d[key]`` of a saved calibrator, or a ValueError naming the missing field (not a KeyError)."""
    if not isinstance(d, dict):
        raise ValueError(f"a saved {owner} must be a JSON object; got {type(d).__name__}")
    if key not in d:
        raise ValueError(f"the saved {owner} lacks the field {key!r}")
    return d[key]


def _saved_number(d: Any, key: str, owner: str, *, positive: bool = False) -> float:
    """A finite (``positive``: > 0) number of a saved calibrator: a tampered or corrupt file is an error,
    never a calibrator that silently reverses or flattens the predictions."""
    value = _saved_field(d, key, owner)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0):
        kind = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"the saved {owner} has an invalid {key!r}: expected {kind}, got {value!r}")
    return float(value)


def _saved_flag(d: Any, key: str, owner: str) -> bool:
    value = _saved_field(d, key, owner)
    if not isinstance(value, bool):
        raise ValueError(f"the saved {owner} has an invalid {key!r}: expected true or false, got {value!r}")
    return value


def _saved_array(value: Any, key: str, owner: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """A finite float64 array of a saved calibrator, of ``shape`` when given."""
    try:
        t = torch.tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"the saved {owner} has an invalid {key!r}: expected an array of numbers") from None
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f"the saved {owner} has an invalid {key!r}: expected shape {list(shape)}, got {list(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"the saved {owner} has an invalid {key!r}: it holds NaN or Inf")
    return t


def _saved_n_classes(d: Any, owner: str, *, required: bool = True) -> int | None:
    if not required and d.get("n_classes") is None:
        return None
    value = _saved_field(d, "n_classes", owner)
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ValueError(f"the saved {owner} has an invalid 'n_classes': expected an integer >= 2, got {value!r}")
    return value


class _Calibrator:
    """Shared plumbing: probabilities from calibrated logits, JSON persistence."""

    kind = "calibrator"
    binary_: bool

    def _check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit(logits, labels) first")

    def transform(self, logits: Any) -> torch.Tensor:
        raise NotImplementedError

    def predict_proba(self, logits: Any) -> torch.Tensor:
        """Calibrated probabilities: ``[N, K]`` (multiclass) or ``[N]`` (binary, positive class)."""
        z = self.transform(logits)
        return torch.sigmoid(z) if z.ndim == 1 else torch.softmax(z, 1)

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted calibrator as JSON (atomically: temporary file, then rename)."""
        self._check_fitted()
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".json")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump({"type": self.kind, **self.to_dict()}, fh, indent=2)
            mask = os.umask(0o022)  # mkstemp makes the file 0600; a saved calibrator follows the umask
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def _fit_inverse_temperature(
    derivatives: Any, *, tol: float, max_passes: int, t_min: float, t_max: float
) -> tuple[float, float, float, int, bool, float]:
    """Minimise an NLL that is convex in ``beta = 1 / T`` by safeguarded Newton steps (bisection
    in log-space whenever a step would leave the current bracket ``[1 / t_max, 1 / t_min]``).

    ``derivatives(beta) -> (NLL, dNLL/dbeta, d2NLL/dbeta2)`` is one pass over the data. Returns
    ``(beta, NLL, relative gradient, passes, at_bound, NLL at beta = 1)``; ``at_bound`` when the
    NLL still decreases at a bound of the bracket (no interior optimum: separable data)."""
    lo, hi = 1.0 / t_max, 1.0 / t_min
    beta = 1.0
    f, g, h = derivatives(beta)
    f_start = f
    passes = 1
    rel = abs(g) * beta / max(abs(f), 1e-300)
    while rel > tol and passes < max_passes:
        if g > 0:
            hi = beta
        else:
            lo = beta
        step = beta - g / h if h > 0 else math.nan
        beta = step if lo < step < hi else math.sqrt(lo * hi)  # Newton inside the bracket, else bisect
        f, g, h = derivatives(beta)
        passes += 1
        rel = abs(g) * beta / max(abs(f), 1e-300)
        if hi / lo < 1 + 1e-15:
            break
    at_bound = False
    if rel > tol:
        # no interior optimum found: check whether the NLL still decreases at the bound
        edge = 1.0 / t_min if g < 0 else 1.0 / t_max
        fe, ge, _ = derivatives(edge)
        passes += 1
        if (ge < 0) == (g < 0) and fe <= f:
            beta, f, rel, at_bound = edge, fe, 0.0, True
    return beta, f, rel, passes, at_bound, f_start


class TemperatureScaler(_Calibrator):
    r"""Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017).

    Divides the logits by one temperature ``T > 0`` chosen to minimise the negative
    log-likelihood of the validation labels. The NLL is convex in ``beta = 1 / T`` with
    derivative ``mean(E_p[z] - z_y)`` and second derivative ``mean(Var_p[z])`` (p the softmax of
    ``beta z``), so a safeguarded Newton iteration (bisection in log-space whenever a step would
    leave the current bracket) reaches the optimum to machine precision in a handful of passes
    over the data, where LBFGS(lr=0.01, max_iter=50) started at T = 1.5 can stop far from it.
    Binary models with one logit are scaled the same way (softmax -> sigmoid). Accuracy is unchanged.

    Args:
        tol: stop when the relative gradient ``|dNLL/dT| * T / NLL`` is below this (default 1e-10).
        max_passes: at most this many passes over the data (default 30).
        t_min, t_max: the temperature is kept in ``[t_min, t_max]`` (default 1e-3, 1e3); if the
            optimum lies outside (e.g. perfectly separable validation data) the bound is used and
            ``at_bound_`` is set, with a warning.

    Attributes (after ``fit``): ``temperature_``, ``nll_before_``, ``nll_after_``, ``n_passes_``,
    ``relative_gradient_``, ``converged_``, ``at_bound_``, ``diverged_`` (separable validation data: T -> 0
    without end; a warning, and ``converged_`` is False), ``binary_``.

    Returns:
        ``fit(logits, labels)`` returns the fitted calibrator; ``transform(logits)`` the calibrated logits and
        ``predict_proba(logits)`` the calibrated probabilities (``[N, K]``, or ``[N]`` for one binary logit).

    Raises:
        ValueError: not ``0 < t_min < 1 < t_max``; ``fit`` on logits and labels of different lengths,
            non-finite logits, labels outside ``[0, K)``; ``transform`` before ``fit``, or logits with another
            number of classes than fitted.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> true_logits = 2 * torch.randn(4000, 3, generator=g)
        >>> labels = torch.multinomial(true_logits.softmax(1), 1, generator=g).squeeze(1)
        >>> scaler = TemperatureScaler().fit(3 * true_logits, labels)  # a model 3x over-confident
        >>> round(scaler.temperature_, 1)
        3.0
    """

    kind = "temperature"

    def __init__(self, *, tol: float = 1e-10, max_passes: int = 30, t_min: float = 1e-3, t_max: float = 1e3) -> None:
        if not (0 < t_min < 1 < t_max):
            raise ValueError(f"need 0 < t_min < 1 < t_max; got t_min={t_min}, t_max={t_max}")
        self.tol = float(tol)
        self.max_passes = check_int(max_passes, "max_passes", low=1)
        self.t_min, self.t_max = float(t_min), float(t_max)

    @staticmethod
    def _nll_derivatives(
        z: torch.Tensor, y: torch.Tensor, beta: float, distributed: bool = False
    ) -> tuple[float, float, float]:
        """One pass: mean NLL, dNLL/dbeta and d2NLL/dbeta2 at ``beta`` (over every rank's rows with
        ``distributed``: four numbers all-reduced per pass)."""
        f = g = h = 0.0
        for start in range(0, z.shape[0], CHUNK_ROWS):
            zc, yc = z[start : start + CHUNK_ROWS], y[start : start + CHUNK_ROWS]
            if zc.ndim == 1:
                s = beta * zc
                yf = yc.to(zc.dtype)
                p = torch.sigmoid(s)
                f += float((torch.nn.functional.softplus(s) - yf * s).sum())
                g += float(((p - yf) * zc).sum())
                h += float((p * (1.0 - p) * zc * zc).sum())
            else:
                s = beta * zc
                lse = torch.logsumexp(s, 1, keepdim=True)
                w = torch.exp(s - lse)
                zy = zc.gather(1, yc.unsqueeze(1)).squeeze(1)
                ez = (w * zc).sum(1)
                f += float((lse.squeeze(1) - beta * zy).sum())
                g += float((ez - zy).sum())
                h += float((w * (zc - ez.unsqueeze(1)) ** 2).sum())
        n = float(z.shape[0])
        if distributed:
            f, g, h, n = (float(v) for v in all_reduce_numbers(f, g, h, n))
        return f / n, g / n, h / n

    def fit(self, logits: Any, labels: Any, *, distributed: bool = False) -> TemperatureScaler:
        """Fit T on validation logits ``[N, K]`` (or ``[N]`` for one binary logit) and labels ``[N]``.

        ``distributed=True`` (under ``torch.distributed``) finds the one temperature of the validation
        set sharded over the ranks: each Newton pass all-reduces four numbers; every rank gets the same T.
        """
        if distributed:
            require_process_group("TemperatureScaler.fit")
        z, y = _logits_labels(logits, labels)
        _reject_probabilities(z)
        assert y is not None
        self.binary_ = z.ndim == 1
        self.n_classes_ = 2 if self.binary_ else z.shape[1]
        if distributed:  # a shard may hold one class: check the classes of all the ranks together
            (counts,) = all_reduce_numbers(torch.bincount(y.cpu(), minlength=self.n_classes_).numpy())
            _check_fit_labels(torch.from_numpy(np.flatnonzero(counts > 0)), self.n_classes_)
        else:
            _check_fit_labels(y, self.n_classes_)
        fit = _fit_inverse_temperature(lambda beta: self._nll_derivatives(z, y, beta, distributed), tol=self.tol,
                                      max_passes=self.max_passes, t_min=self.t_min, t_max=self.t_max)
        beta, f, rel, passes, self.at_bound_, self.nll_before_ = fit
        # separable: the NLL falls to ~0, or its optimum lies below t_min (T -> 0 sharpens without end)
        self.diverged_ = f < 1e-12 or (self.at_bound_ and 1.0 / beta <= self.t_min * (1 + 1e-9))
        if f < 1e-12:
            warnings.warn(
                f"TemperatureScaler did not converge: the validation NLL is ~0 at T = {1 / beta:g}: the validation "
                "set is separable, so the NLL keeps decreasing as T -> 0, the temperature is not identifiable and "
                "converged_ is False. Use a larger validation set.", RuntimeWarning, stacklevel=2,
            )
        elif self.at_bound_:
            warnings.warn(
                f"the NLL-optimal temperature lies outside [{self.t_min}, {self.t_max}]; using T = {1 / beta:g} and "
                "converged_ is False. Is the validation set separable or tiny?", RuntimeWarning,
                stacklevel=2,
            )
        self.temperature_ = 1.0 / beta
        self.nll_after_ = f
        self.n_passes_ = passes
        self.relative_gradient_ = rel
        self.converged_ = rel <= self.tol and not self.diverged_ and not self.at_bound_
        self.fitted_ = True
        return self

    def nll(self, logits: Any, labels: Any, temperature: float | None = None) -> float:
        """Mean NLL of ``labels`` under ``logits / temperature`` (default: the fitted one)."""
        z, y = _logits_labels(logits, labels)
        assert y is not None
        t = self.temperature_ if temperature is None else float(temperature)
        return self._nll_derivatives(z, y, 1.0 / t)[0]

    def transform(self, logits: Any) -> torch.Tensor:
        self._check_fitted()
        z, _ = _logits_labels(logits)
        _check_width(z, self)
        return z / self.temperature_

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature_, "binary": self.binary_, "n_classes": self.n_classes_,
                "nll_before": self.nll_before_, "nll_after": self.nll_after_, "n_passes": self.n_passes_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TemperatureScaler:
        """The calibrator saved by :meth:`to_dict`; ``ValueError`` for a missing or invalid parameter
        (a temperature <= 0 would reverse or flatten the predictions)."""
        obj = cls()
        owner = "TemperatureScaler"
        obj.temperature_ = _saved_number(d, "temperature", owner, positive=True)
        obj.binary_ = _saved_flag(d, "binary", owner)
        obj.n_classes_ = _saved_n_classes(d, owner, required=False)  # files of medloss 0.1.0 do not record it
        obj.nll_before_, obj.nll_after_ = d.get("nll_before"), d.get("nll_after")
        obj.n_passes_ = d.get("n_passes")
        obj.fitted_ = True
        return obj


class PlattScaler(_Calibrator):
    r"""Platt scaling (Platt 1999): ``P(y = 1) = sigmoid(a z + b)`` for one binary logit ``z``.

    ``a`` and ``b`` minimise the log-loss by Newton's method with a backtracking line search (the
    problem is convex), to machine precision. ``smooth_targets=True`` (default) uses Platt's
    regularised targets ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)`` as scikit-learn's
    ``CalibratedClassifierCV(method="sigmoid")``; ``False`` fits the plain labels. Two-column
    logits ``[N, 2]`` are reduced to the margin ``z_1 - z_0``.

    Attributes (after ``fit``): ``a_``, ``b_``, ``n_iter_``, ``converged_``, ``diverged_`` (only possible with
    ``smooth_targets=False`` on separable data: a warning, and ``converged_`` is False).

    Args:
        smooth_targets: Platt's regularised targets (default True, as scikit-learn).
        max_iter: at most this many Newton steps (default 100).

    Returns:
        ``fit(logits, labels)`` returns the fitted calibrator; ``transform(logits)`` the calibrated logits and
        ``predict_proba(logits)`` the calibrated probabilities (``[N, K]``, or ``[N]`` for one binary logit).

    Raises:
        ValueError: ``max_iter`` < 1; ``fit`` on more than one binary logit per sample, labels not 0 / 1,
            non-finite logits; ``transform`` before ``fit``.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> z = torch.randn(40000, generator=g)
        >>> y = torch.bernoulli(torch.sigmoid(2 * z - 1), generator=g)
        >>> platt = PlattScaler().fit(z, y)  # the truth is sigmoid(2 z - 1)
        >>> [round(v, 1) for v in (platt.a_, platt.b_)]
        [2.0, -1.0]
    """

    kind = "platt"

    def __init__(self, *, smooth_targets: bool = True, max_iter: int = 100) -> None:
        self.smooth_targets = bool(smooth_targets)
        self.max_iter = check_int(max_iter, "max_iter", low=1)

    @staticmethod
    def _margin(z: torch.Tensor) -> torch.Tensor:
        if z.ndim == 2:
            if z.shape[1] != 2:
                raise ValueError(
                    f"PlattScaler is binary: `logits` must be [N], [N, 1] or [N, 2]; got {fmt_shape(z.shape)}"
                )
            return z[:, 1] - z[:, 0]
        return z

    def fit(self, logits: Any, labels: Any) -> PlattScaler:
        z, y = _logits_labels(logits, labels)
        assert y is not None
        z = self._margin(z)
        _reject_probabilities(z)
        _check_fit_labels(y, 2)
        t = y.to(torch.float64)
        if self.smooth_targets:
            n_pos, n_neg = float(t.sum()), float(len(t) - t.sum())
            t = torch.where(y == 1, (n_pos + 1) / (n_pos + 2), 1.0 / (n_neg + 2))
        x = torch.stack([z, torch.ones_like(z)], 1)

        def loss(theta: torch.Tensor) -> float:
            s = x @ theta
            return float((torch.nn.functional.softplus(s) - t * s).mean())

        theta = torch.tensor([1.0, 0.0], dtype=torch.float64)
        current = loss(theta)
        n_iter = 0
        while n_iter < self.max_iter:
            n_iter += 1
            p = torch.sigmoid(x @ theta)
            grad = x.T @ (p - t) / len(t)
            hess = (x.T * (p * (1 - p))) @ x / len(t) + 1e-12 * torch.eye(2, dtype=torch.float64)
            step = torch.linalg.solve(hess, grad)
            if float(grad.abs().max()) < 1e-12:
                break
            lr = 1.0
            while lr > 1e-10:
                candidate = theta - lr * step
                value = loss(candidate)
                if value <= current:
                    break
                lr /= 2
            theta, current = candidate, value
        self.a_, self.b_ = float(theta[0]), float(theta[1])
        self.n_iter_ = n_iter
        self.diverged_ = _diverges(lambda th: loss(th), torch.tensor([1.0, 0.0], dtype=torch.float64), theta, current)
        self.converged_ = float(grad.abs().max()) < 1e-9 and not self.diverged_
        if self.diverged_:
            _warn_divergence("PlattScaler", current)
        self.binary_ = True
        self.fitted_ = True
        return self

    def transform(self, logits: Any) -> torch.Tensor:
        self._check_fitted()
        z, _ = _logits_labels(logits)
        return self.a_ * self._margin(z) + self.b_

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a_, "b": self.b_, "smooth_targets": self.smooth_targets}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlattScaler:
        """The calibrator saved by :meth:`to_dict`; ``ValueError`` for a missing or non-finite parameter."""
        a, b = _saved_number(d, "a", "PlattScaler"), _saved_number(d, "b", "PlattScaler")
        obj = cls(smooth_targets=_saved_flag(d, "smooth_targets", "PlattScaler") if "smooth_targets" in d else True)
        obj.a_, obj.b_ = a, b
        obj.binary_ = obj.fitted_ = True
        return obj


class IsotonicCalibrator(_Calibrator):
    """Isotonic regression (Zadrozny & Elkan 2002) on predicted probabilities, via scikit-learn's
    ``IsotonicRegression`` (``out_of_bounds="clip"``, outputs in [0, 1]).

    Binary (one logit): fits ``P(y = 1)`` against ``sigmoid(z)``. Multiclass: one-vs-rest per
    class on ``softmax(z)``, then each row is renormalised to sum to one (a row that maps to all
    zeros becomes uniform). The fitted step functions are stored as thresholds, so a saved
    calibrator reloads without scikit-learn's pickles.

    ``predict_proba`` returns the calibrated probabilities exactly; ``transform`` returns their
    logits (``log p``, or ``logit p`` for binary), clipped at machine epsilon since isotonic
    outputs can be exactly 0 or 1. Fitted in closed form (``converged_`` True) unless the validation rows are
    separable: then every step is 0 or 1 and the fit warns, with ``diverged_`` set and ``converged_`` False.

    Returns:
        ``fit(logits, labels)`` returns the fitted calibrator; ``transform(logits)`` the calibrated logits and
        ``predict_proba(logits)`` the calibrated probabilities (``[N, K]``, or ``[N]`` for one binary logit).

    Raises:
        ValueError: ``fit`` on logits and labels of different lengths, non-finite logits, labels outside
            ``[0, K)``; ``transform`` before ``fit``.
        ImportError: scikit-learn not installed (``pip install medloss[cli]``).

    Examples:
        >>> z = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0])
        >>> iso = IsotonicCalibrator().fit(z, torch.tensor([0, 0, 1, 0, 1, 1]))
        >>> iso.predict_proba(z).tolist()  # monotone in z: the out-of-order pair (1, 0) pools to 1/2
        [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    """

    kind = "isotonic"

    def fit(self, logits: Any, labels: Any) -> IsotonicCalibrator:
        IsotonicRegression = require("sklearn.isotonic", "IsotonicCalibrator").IsotonicRegression

        z, y = _logits_labels(logits, labels)
        assert y is not None
        _reject_probabilities(z)
        self.binary_ = z.ndim == 1
        self.n_classes_ = 2 if self.binary_ else z.shape[1]
        _check_fit_labels(y, self.n_classes_)
        probs = torch.sigmoid(z).unsqueeze(1) if self.binary_ else torch.softmax(z, 1)
        targets = y.unsqueeze(1).double() if self.binary_ else torch.nn.functional.one_hot(y, z.shape[1]).double()
        self.thresholds_: list[tuple[list[float], list[float]]] = []
        for k in range(probs.shape[1]):
            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
            iso.fit(probs[:, k].cpu().numpy(), targets[:, k].cpu().numpy())  # scikit-learn: on the host
            self.thresholds_.append((iso.X_thresholds_.tolist(), iso.y_thresholds_.tolist()))
        self.fitted_ = True
        # closed form (pool-adjacent-violators): nothing to converge, but on separable data the steps are exactly
        # 0 and 1 and every validation row is "certain": a mistake on new data then costs an infinite NLL
        p = self.predict_proba(z)
        p_true = torch.where(y == 1, p, 1.0 - p) if self.binary_ else p.gather(1, y.unsqueeze(1)).squeeze(1)
        nll = float(-torch.log(p_true.double().clamp_min(torch.finfo(torch.float64).tiny)).mean())
        self.nll_after_ = nll
        self.diverged_ = nll < SEPARABLE_NLL
        self.converged_ = not self.diverged_
        if self.diverged_:
            warnings.warn(f"IsotonicCalibrator: the validation data are separable (validation NLL {nll:.2g}): its "
                          "steps reach probability 0 and 1, so converged_ is False; " + DIVERGENCE_ADVICE,
                          RuntimeWarning, stacklevel=2)
        return self

    def predict_proba(self, logits: Any) -> torch.Tensor:
        self._check_fitted()
        z, _ = _logits_labels(logits)
        _check_width(z, self)
        probs = torch.sigmoid(z).unsqueeze(1) if self.binary_ else torch.softmax(z, 1)
        out = np.empty(tuple(probs.shape))
        for k, (xs, ys) in enumerate(self.thresholds_):
            out[:, k] = np.interp(probs[:, k].cpu().numpy(), xs, ys)
        result = torch.from_numpy(out).to(z.device)
        if self.binary_:
            return result[:, 0]
        total = result.sum(1, keepdim=True)
        uniform = torch.full_like(result, 1.0 / result.shape[1])
        return torch.where(total > 0, result / total.clamp_min(1e-300), uniform)

    def transform(self, logits: Any) -> torch.Tensor:
        p = self.predict_proba(logits)
        eps = torch.finfo(p.dtype).eps
        return torch.logit(p, eps=eps) if self.binary_ else torch.log(p.clamp_min(eps))

    def to_dict(self) -> dict[str, Any]:
        return {"binary": self.binary_, "thresholds": [{"x": x, "y": y} for x, y in self.thresholds_]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IsotonicCalibrator:
        """The calibrator saved by :meth:`to_dict`; ``ValueError`` unless every step function has
        increasing thresholds in [0, 1] and non-decreasing values in [0, 1]."""
        owner = "IsotonicCalibrator"
        obj = cls()
        obj.binary_ = _saved_flag(d, "binary", owner)
        steps = _saved_field(d, "thresholds", owner)
        if not isinstance(steps, list) or (len(steps) != 1 if obj.binary_ else len(steps) < 2):
            raise ValueError(f"the saved {owner} has an invalid 'thresholds': expected one step function (binary) or "
                             "one per class")
        obj.thresholds_ = []
        for k, step in enumerate(steps):
            xs = _saved_array(_saved_field(step, "x", owner), f"thresholds[{k}].x", owner)
            ys = _saved_array(_saved_field(step, "y", owner), f"thresholds[{k}].y", owner)
            if xs.ndim != 1 or xs.shape != ys.shape or xs.numel() == 0:
                raise ValueError(f"the saved {owner} has an invalid 'thresholds[{k}]': x and y must be equal-length "
                                 "non-empty lists")
            if bool((xs.diff() < 0).any() | (ys.diff() < 0).any()) or not bool(
                    ((xs >= 0) & (xs <= 1) & (ys >= 0) & (ys <= 1)).all()):
                raise ValueError(f"the saved {owner} has an invalid 'thresholds[{k}]': x and y must be non-decreasing "
                                 "and lie in [0, 1]")
            obj.thresholds_.append((xs.tolist(), ys.tolist()))
        obj.n_classes_ = 2 if obj.binary_ else len(obj.thresholds_)
        obj.fitted_ = True
        return obj


_KINDS: dict[str, type[_Calibrator]] = {c.kind: c for c in (TemperatureScaler, PlattScaler, IsotonicCalibrator)}


def _register_calibrator(cls: type[_Calibrator]) -> type[_Calibrator]:
    """Make ``load_calibrator`` know a calibrator class by its ``kind`` (class decorator)."""
    _KINDS[cls.kind] = cls
    return cls


def load_calibrator(path: str | os.PathLike) -> _Calibrator:
    """Load a calibrator written by ``save(path)``.

    Args:
        path: a JSON file written by a calibrator's ``save``.

    Returns:
        The fitted calibrator, of the class that saved it.

    Raises:
        ValueError: the file is not JSON, not a medloss calibrator, or holds a missing or invalid parameter
            (the message names the file and the field).
        OSError: the file cannot be read.

    Examples:
        >>> import os, tempfile
        >>> logits = 2 * torch.randn(500, 3)
        >>> scaler = TemperatureScaler().fit(logits, torch.multinomial(logits.softmax(1), 1).squeeze(1))
        >>> path = os.path.join(tempfile.mkdtemp(), "calibrator.json")
        >>> scaler.save(path)
        >>> load_calibrator(path).temperature_ == scaler.temperature_
        True
    """
    with open(path) as fh:
        try:
            d = json.load(fh)
        except ValueError as err:
            raise ValueError(f"{os.fspath(path)!r} is not a medloss calibrator file (not JSON: {err})") from None
    kind = d.get("type") if isinstance(d, dict) else None
    if kind not in _KINDS:
        raise ValueError(f"{os.fspath(path)!r} is not a medloss calibrator file (type={kind!r})")
    try:
        return _KINDS[kind].from_dict(d)
    except ValueError as err:
        raise ValueError(f"{os.fspath(path)!r}: {err}") from None
