r"""Richer post-hoc calibrators: multinomial logistic regressions on the logits (Guo et al. 2017:
vector and matrix scaling, one temperature per class), on the log-probabilities (Kull et al. 2019:
Dirichlet calibration with ODIR regularisation) and, for one binary score, on ``ln p`` and
``ln(1 - p)`` (Kull et al. 2017: beta calibration).

Each maps the validation logits ``z`` to calibrated logits ``s(z; theta)`` that are linear in
``theta``, so the validation NLL is convex in ``theta``: it is minimised in float64 by L-BFGS with a
strong-Wolfe line search, started at the identity map, until the gradient's largest entry is below
``tol`` (``grad_norm_`` reports it, ``converged_`` says whether it got there). Deterministic. On validation
data that the family's features separate the NLL has no minimum: the fit then warns, sets ``diverged_`` and
``converged_ = False`` (the parameters it stopped at are arbitrary; use temperature scaling or ODIR).
Nested families fit at least as well on validation NLL as those they contain: temperature ⊂
class-wise temperature ⊂ vector ⊂ matrix, and temperature ⊂ Dirichlet.

Fit on a validation split, never on the test set you report; the richer the family, the more
validation data it needs (matrix and Dirichlet calibration have ``K^2 + K`` parameters).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F

from .._validation import check_int, check_number, fmt_shape
from .calibrators import (
    TemperatureScaler,  # noqa: F401  (the docstring examples compare with it)
    _Calibrator,
    _check_fit_labels,
    _check_width,
    _diverges,
    _logits_labels,
    _register_calibrator,
    _reject_probabilities,
    _saved_array,
    _saved_field,
    _saved_flag,
    _saved_n_classes,
    _warn_divergence,
)


def _identity(n_classes: int, *, matrix: bool) -> dict[str, torch.Tensor]:
    """Start of the affine families: the identity map (weights 1 or I, biases 0)."""
    eye = torch.eye(n_classes, dtype=torch.float64) if matrix else torch.ones(n_classes, dtype=torch.float64)
    return {"weights": eye, "biases": torch.zeros(n_classes, dtype=torch.float64)}


class _LinearLogitCalibrator(_Calibrator):
    """Shared fitting: L-BFGS on the mean NLL (+ penalty) of ``self._logits(params, z)``."""

    binary_only = False
    multiclass_only = False

    def __init__(self, *, tol: float = 1e-7, max_iter: int = 1000) -> None:
        self.tol = check_number(tol, "tol", low=0.0, low_inclusive=False)
        self.max_iter = check_int(max_iter, "max_iter", low=1)

    # --- what a family defines
    def _init_params(self, n_classes: int) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _logits(self, params: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _penalty(self, params: dict[str, torch.Tensor], n_classes: int) -> torch.Tensor | float:
        return 0.0

    # --- shared machinery
    def _check_input(self, z: torch.Tensor) -> None:
        name = type(self).__name__
        if self.binary_only and z.ndim != 1:
            raise ValueError(f"{name} is binary: `logits` must be [N] or [N, 1] (one logit); got {fmt_shape(z.shape)}")
        if self.multiclass_only and z.ndim != 2:
            raise ValueError(f"{name} is multiclass: `logits` must be [N, K] with K >= 2; got {fmt_shape(z.shape)}")

    @staticmethod
    def _nll(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if s.ndim == 1:
            return F.binary_cross_entropy_with_logits(s, y.to(s.dtype))
        return F.cross_entropy(s, y)

    def fit(self, logits: Any, labels: Any) -> _LinearLogitCalibrator:
        """Fit on validation logits ``[N, K]`` (``[N]`` for the binary calibrators) and labels ``[N]``."""
        z, y = _logits_labels(logits, labels)
        assert y is not None
        self._check_input(z)
        _reject_probabilities(z)
        self.binary_ = z.ndim == 1
        self.n_classes_ = 2 if self.binary_ else z.shape[1]
        _check_fit_labels(y, self.n_classes_)
        params = {k: v.to(z.device).requires_grad_(True) for k, v in self._init_params(self.n_classes_).items()}
        with torch.no_grad():
            self.nll_before_ = float(self._nll(self._logits(params, z), y))
        optimizer = torch.optim.LBFGS(list(params.values()), lr=1.0, max_iter=self.max_iter, tolerance_grad=self.tol,
                                      tolerance_change=0.0, history_size=50, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = self._nll(self._logits(params, z), y) + self._penalty(params, self.n_classes_)
            loss.backward()
            return loss

        optimizer.step(closure)
        objective = closure()
        self.grad_norm_ = max(float(p.grad.abs().max()) for p in params.values())
        self.n_iter_ = int(optimizer.state[optimizer._params[0]].get("n_iter", 0))
        if self.grad_norm_ > self.tol:  # an ill-conditioned fit (ODIR): finish with Newton steps
            objective = self._newton_polish(params, z, y)
        self.converged_ = self.grad_norm_ <= self.tol
        self.objective_ = float(objective.detach())
        self.params_ = {k: v.detach().clone() for k, v in params.items()}
        with torch.no_grad():
            self.nll_after_ = float(self._nll(self._logits(self.params_, z), y))
        if self._check_divergence(z, y):
            pass  # warned
        elif not self.converged_:
            warnings.warn(f"{type(self).__name__} stopped after {self.n_iter_} iterations with gradient "
                          f"{self.grad_norm_:.2g} > tol {self.tol:g}: raise max_iter", RuntimeWarning, stacklevel=2)
        self.fitted_ = True
        return self

    def _check_divergence(self, z: torch.Tensor, y: torch.Tensor) -> bool:
        """Set ``diverged_`` (and ``converged_ = False``, with a warning) when the fitted NLL has no minimum."""
        names = list(self.params_)
        start = self._init_params(self.n_classes_)
        flat = torch.cat([self.params_[n].flatten() for n in names])
        flat0 = torch.cat([start[n].to(flat).flatten() for n in names])
        shapes = [self.params_[n].shape for n in names]

        def nll_at(x: torch.Tensor) -> torch.Tensor:
            parts = {n: t.view(s) for n, t, s in zip(names, x.split([s.numel() for s in shapes]), shapes, strict=True)}
            return self._nll(self._logits(parts, z), y)

        self.diverged_ = _diverges(nll_at, flat0, flat, self.nll_after_)
        if self.diverged_:
            self.converged_ = False
            _warn_divergence(type(self).__name__, self.nll_after_)
        return self.diverged_

    def _newton_polish(self, params: dict[str, torch.Tensor], z: torch.Tensor, y: torch.Tensor,
                       steps: int = 8) -> torch.Tensor:
        """Newton steps with a backtracking line search from where L-BFGS stopped (the problem is
        convex, with ``K^2 + K`` parameters at most): quadratic convergence where L-BFGS crawls. The
        Hessian gets a tiny ridge, so directions the objective ignores stay where they are."""
        names = list(params)
        shapes = [params[n].shape for n in names]
        sizes = [params[n].numel() for n in names]

        def objective(flat: torch.Tensor) -> torch.Tensor:
            parts = {n: t.view(shape) for n, t, shape in zip(names, flat.split(sizes), shapes, strict=True)}
            return self._nll(self._logits(parts, z), y) + self._penalty(parts, self.n_classes_)

        x = torch.cat([params[n].detach().flatten() for n in names])
        value = objective(x)
        for _ in range(steps):
            xg = x.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(objective(xg), xg)
            if float(grad.abs().max()) <= self.tol:
                break
            hessian = torch.autograd.functional.hessian(objective, x)
            ridge = 1e-10 * max(float(hessian.diagonal().abs().max()), 1.0)
            step = torch.linalg.solve(hessian + ridge * torch.eye(len(x), dtype=x.dtype), grad)
            t = 1.0
            while t > 1e-8:
                candidate = x - t * step
                new_value = objective(candidate)
                if float(new_value) <= float(value):
                    break
                t /= 2
            x, value = candidate.detach(), new_value.detach()
            self.n_iter_ += 1
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(objective(xg), xg)
        self.grad_norm_ = float(grad.abs().max())
        with torch.no_grad():
            for n, t, shape in zip(names, x.split(sizes), shapes, strict=True):
                params[n].copy_(t.view(shape))
        return value

    def transform(self, logits: Any) -> torch.Tensor:
        """Calibrated logits (``[N, K]``, or ``[N]`` for the binary calibrators)."""
        self._check_fitted()
        z, _ = _logits_labels(logits)
        _check_width(z, self)
        params = {k: v.to(z.device) for k, v in self.params_.items()}
        return self._logits(params, z)

    def nll(self, logits: Any, labels: Any) -> float:
        """Mean NLL of ``labels`` under the calibrated logits."""
        z, y = _logits_labels(logits, labels)
        assert y is not None
        return float(self._nll(self.transform(z), y))

    def to_dict(self) -> dict[str, Any]:
        return {"binary": self.binary_, "n_classes": self.n_classes_, "config": self._config(),
                "params": {k: v.tolist() for k, v in self.params_.items()},
                "nll_before": self.nll_before_, "nll_after": self.nll_after_, "grad_norm": self.grad_norm_}

    def _config(self) -> dict[str, Any]:
        return {"tol": self.tol, "max_iter": self.max_iter}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _LinearLogitCalibrator:
        """The calibrator saved by :meth:`to_dict`; ``ValueError`` for a missing field, an unknown
        setting, or parameters of the wrong shape or with NaN / Inf."""
        owner = cls.__name__
        config = d.get("config", {}) if isinstance(d, dict) else None
        try:
            obj = cls(**config) if isinstance(config, dict) else None
        except TypeError:
            obj = None
        if obj is None:
            raise ValueError(f"the saved {owner} has an invalid 'config': {config!r}")
        obj.binary_, obj.n_classes_ = _saved_flag(d, "binary", owner), _saved_n_classes(d, owner)
        if (cls.binary_only and not (obj.binary_ and obj.n_classes_ == 2)) or (cls.multiclass_only and obj.binary_):
            raise ValueError(f"the saved {owner} has 'binary' = {obj.binary_} with 'n_classes' = {obj.n_classes_}")
        expected = obj._init_params(obj.n_classes_)
        params = _saved_field(d, "params", owner)
        if not isinstance(params, dict) or set(params) != set(expected):
            raise ValueError(f"the saved {owner} has an invalid 'params': expected {sorted(expected)}")
        obj.params_ = {k: _saved_array(v, f"params.{k}", owner, tuple(expected[k].shape)) for k, v in params.items()}
        obj.nll_before_, obj.nll_after_, obj.grad_norm_ = d.get("nll_before"), d.get("nll_after"), d.get("grad_norm")
        obj.fitted_ = True
        return obj


@_register_calibrator
class ClasswiseTemperatureScaler(_LinearLogitCalibrator):
    r"""One temperature per class: ``s_k = z_k / T_k`` (vector scaling without the bias).

    Args:
        tol: stop when the largest gradient entry of the NLL is below this (default 1e-7: the NLL is
            then within ~1e-14 of its minimum).
        max_iter: at most this many L-BFGS iterations (default 1000).

    Attributes (after ``fit``): ``temperatures_`` ``[K]``, ``nll_before_``, ``nll_after_``,
    ``grad_norm_``, ``n_iter_``, ``converged_``, ``diverged_`` (True when the validation data are separable:
    the NLL has no minimum, the fit warns and ``converged_`` is False).

    Returns:
        ``fit(logits, labels)`` returns the fitted calibrator; ``transform(logits)`` the calibrated logits and
        ``predict_proba(logits)`` the calibrated probabilities (``[N, K]``, or ``[N]`` for one binary logit).

    Raises:
        ValueError: binary (one-logit) input, probabilities instead of logits, labels of one
            class, or logits of another width than fitted.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> truth = torch.randn(20000, 3, generator=g, dtype=torch.float64)
        >>> y = torch.multinomial(truth.softmax(1), 1, generator=g).squeeze(1)
        >>> cal = ClasswiseTemperatureScaler().fit(truth * torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64), y)
        >>> [round(t, 1) for t in cal.temperatures_.tolist()]  # undoes the per-class scaling
        [2.0, 1.0, 0.5]
    """

    kind = "classwise_temperature"
    multiclass_only = True

    def _init_params(self, n_classes: int) -> dict[str, torch.Tensor]:
        return {"inverse_temperature": torch.ones(n_classes, dtype=torch.float64)}

    def _logits(self, params, z):
        return z * params["inverse_temperature"]

    @property
    def temperatures_(self) -> torch.Tensor:
        self._check_fitted()
        return 1.0 / self.params_["inverse_temperature"]


@_register_calibrator
class VectorScaler(_LinearLogitCalibrator):
    r"""Vector scaling (Guo et al. 2017): ``s = w * z + b`` with one weight and one bias per class.

    Args:
        tol, max_iter: as :class:`ClasswiseTemperatureScaler`.

    Attributes (after ``fit``): ``weights_`` ``[K]``, ``biases_`` ``[K]``, and the fit report as
    :class:`ClasswiseTemperatureScaler`.

    Returns:
        ``fit(logits, labels)`` returns the fitted calibrator; ``transform(logits)`` the calibrated logits and
        ``predict_proba(logits)`` the calibrated probabilities (``[N, K]``, or ``[N]`` for one binary logit).

    Raises:
        ValueError: as :class:`ClasswiseTemperatureScaler`.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> truth = torch.randn(20000, 3, generator=g, dtype=torch.float64)
        >>> y = torch.multinomial(truth.softmax(1), 1, generator=g).squeeze(1)
        >>> cal = VectorScaler().fit(2 * truth + torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), y)
        >>> [round(w, 1) for w in cal.weights_.tolist()]  # halves the logits
        [0.5, 0.5, 0.5]
        >>> round(float(cal.biases_[0] - cal.biases_[1]), 1)  # and removes class 0's offset (0.5 * 1)
        -0.5
    """

    kind = "vector"
    multiclass_only = True

    def _init_params(self, n_classes: int) -> dict[str, torch.Tensor]:
        return _identity(n_classes, matrix=False)

    def _logits(self, params, z):
        return z * params["weights"] + params["biases"]

    @property
    def weights_(self) -> torch.Tensor:
        self._check_fitted()
        return self.params_["weights"]

    @property
    def biases_(self) -> torch.Tensor:
        self._check_fitted()
        return self.params_["biases"]


@_register_calibrator
class MatrixScaler(_LinearLogitCalibrator):
    r"""Matrix scaling (Guo et al. 2017): ``s = W z + b``, ``K^2 + K`` parameters.

    It contains vector scaling (diagonal ``W``) and needs more validation data; prefer
    :class:`DirichletCalibrator` with ODIR regularisation when data are scarce.

    Args:
        tol, max_iter: as :class:`ClasswiseTemperatureScaler`.

    Attributes (after ``fit``): ``weights_`` ``[K, K]``, ``biases_`` ``[K]``, and the fit report.

    Returns:
        ``fit(logits, labels)`` returns the fitted calibrator; ``transform(logits)`` the calibrated logits and
        ``predict_proba(logits)`` the calibrated probabilities (``[N, K]``, or ``[N]`` for one binary logit).

    Raises:
        ValueError: as :class:`ClasswiseTemperatureScaler`.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> truth = torch.randn(20000, 3, generator=g, dtype=torch.float64)
        >>> y = torch.multinomial(truth.softmax(1), 1, generator=g).squeeze(1)
        >>> mixed = truth @ torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64).T
        >>> cal = MatrixScaler().fit(mixed, y)
        >>> bool(cal.nll(mixed, y) < VectorScaler().fit(mixed, y).nll(mixed, y))  # a mixing that vectors cannot undo
        True
    """

    kind = "matrix"
    multiclass_only = True

    def _init_params(self, n_classes: int) -> dict[str, torch.Tensor]:
        return _identity(n_classes, matrix=True)

    def _logits(self, params, z):
        return z @ params["weights"].T + params["biases"]

    weights_ = VectorScaler.weights_
    biases_ = VectorScaler.biases_


@_register_calibrator
class DirichletCalibrator(_LinearLogitCalibrator):
    r"""Dirichlet calibration (Kull et al., "Beyond temperature scaling: Obtaining well-calibrated
    multiclass probabilities with Dirichlet calibration", NeurIPS 2019):

    .. math:: q = \mathrm{softmax}(W \ln p + b),\qquad p = \mathrm{softmax}(z)

    fitted with the ODIR penalty (off-diagonal and intercept regularisation)
    ``reg_lambda / (K (K - 1)) * sum_{i != j} W_ij^2 + reg_mu / K * sum_j b_j^2`` added to the mean
    NLL. It acts on log-probabilities, so it contains temperature scaling (``W = I / T``) but not
    vector scaling on logits.

    Args:
        reg_lambda: ODIR weight of the off-diagonal entries of ``W`` (default 0: plain Dirichlet).
        reg_mu: ODIR weight of the biases (default 0).
        tol, max_iter: as :class:`ClasswiseTemperatureScaler`.

    Attributes (after ``fit``): ``weights_`` ``[K, K]``, ``biases_`` ``[K]``, and the fit report
    (``objective_`` includes the penalty, ``nll_after_`` does not).

    Returns:
        ``fit(logits, labels)`` returns the fitted calibrator; ``transform(logits)`` the calibrated logits and
        ``predict_proba(logits)`` the calibrated probabilities (``[N, K]``, or ``[N]`` for one binary logit).

    Raises:
        ValueError: as :class:`ClasswiseTemperatureScaler`, or a negative ``reg_lambda`` / ``reg_mu``.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> truth = torch.randn(20000, 3, generator=g, dtype=torch.float64)
        >>> y = torch.multinomial(truth.softmax(1), 1, generator=g).squeeze(1)
        >>> cal = DirichletCalibrator().fit(3 * truth, y)  # over-confident by 3
        >>> bool(cal.nll_after_ <= TemperatureScaler().fit(3 * truth, y).nll_after_)  # contains temperature scaling
        True
        >>> strong = DirichletCalibrator(reg_lambda=10.0).fit(3 * truth, y)  # ODIR: W close to diagonal
        >>> off = strong.weights_ - torch.diag(strong.weights_.diagonal())
        >>> bool(off.abs().max() < 0.05), [round(w, 1) for w in strong.weights_.diagonal().tolist()]
        (True, [0.3, 0.3, 0.3])
    """

    kind = "dirichlet"
    multiclass_only = True

    def __init__(
        self, *, reg_lambda: float = 0.0, reg_mu: float = 0.0, tol: float = 1e-7, max_iter: int = 1000
    ) -> None:
        super().__init__(tol=tol, max_iter=max_iter)
        self.reg_lambda = check_number(reg_lambda, "reg_lambda", low=0.0)
        self.reg_mu = check_number(reg_mu, "reg_mu", low=0.0)

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "reg_lambda": self.reg_lambda, "reg_mu": self.reg_mu}

    def _init_params(self, n_classes: int) -> dict[str, torch.Tensor]:
        return _identity(n_classes, matrix=True)

    def _logits(self, params, z):
        return torch.log_softmax(z, 1) @ params["weights"].T + params["biases"]

    @staticmethod
    def _representative(w: torch.Tensor) -> torch.Tensor:
        """``W + 1 u^T`` with the ``u`` that minimises the off-diagonal penalty.

        The calibrated probabilities do not change when the same vector is added to every row of
        ``W`` (``softmax`` ignores a shift common to all classes, and ``sum_j log p_j`` shifts them
        all alike), so the NLL is flat along those directions and only the penalty sees them, with
        a tiny curvature that stalls L-BFGS. Minimising the penalty over the shift in closed form
        (each column's off-diagonal entries centred: ``u_j = -mean_{i != j} W_ij``) leaves an
        objective that is exactly flat there, which L-BFGS never moves along."""
        k = w.shape[0]
        off_sum = w.sum(0) - w.diagonal()
        return w - off_sum.unsqueeze(0) / (k - 1)

    def _penalty(self, params, n_classes):
        if not (self.reg_lambda or self.reg_mu):
            return 0.0
        w = self._representative(params["weights"])
        off = w - torch.diag_embed(w.diagonal())
        b = params["biases"] - params["biases"].mean()  # likewise: a common bias shift changes nothing
        return (self.reg_lambda / (n_classes * (n_classes - 1)) * (off**2).sum()
                + self.reg_mu / n_classes * (b**2).sum())

    def fit(self, logits: Any, labels: Any) -> DirichletCalibrator:
        super().fit(logits, labels)
        # report (and keep) the representatives the penalty chose; the calibrated map is the same
        if self.reg_lambda:
            self.params_["weights"] = self._representative(self.params_["weights"])
        if self.reg_mu:
            self.params_["biases"] = self.params_["biases"] - self.params_["biases"].mean()
        return self

    weights_ = VectorScaler.weights_
    biases_ = VectorScaler.biases_


@_register_calibrator
class BetaCalibrator(_LinearLogitCalibrator):
    r"""Beta calibration (Kull et al., "Beta calibration: a well-founded and easily implemented
    improvement on logistic calibration for binary classifiers", AISTATS 2017), for one binary logit:

    .. math:: \mathrm{logit}\, q = a \ln p - b \ln(1 - p) + c,\qquad p = \sigma(z),\ a, b \ge 0

    ``ln p`` and ``ln(1 - p)`` come from ``logsigmoid`` (exact for any logit). As in the paper, a
    fit with a negative ``a`` (or ``b``) is redone without that term (it is then 0). ``a = b``
    is Platt scaling of the logit; ``a = b = 1, c = 0`` the identity.

    Args:
        tol, max_iter: as :class:`ClasswiseTemperatureScaler`.

    Attributes (after ``fit``): ``a_``, ``b_``, ``c_`` and the fit report.

    Returns:
        ``fit(logits, labels)`` returns the fitted calibrator; ``transform(logits)`` the calibrated logits and
        ``predict_proba(logits)`` the calibrated probabilities (``[N, K]``, or ``[N]`` for one binary logit).

    Raises:
        ValueError: multiclass input (``[N, K]`` with K > 1), labels of one class, probabilities.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> z = 2 * torch.randn(40000, generator=g, dtype=torch.float64)
        >>> p = torch.sigmoid(z)
        >>> y = torch.bernoulli(torch.sigmoid(1.5 * torch.log(p) - 0.5 * torch.log1p(-p) + 0.2), generator=g)
        >>> cal = BetaCalibrator().fit(z, y)
        >>> [round(v, 1) for v in (cal.a_, cal.b_, cal.c_)]
        [1.5, 0.5, 0.2]
    """

    kind = "beta"
    binary_only = True

    def _init_params(self, n_classes: int) -> dict[str, torch.Tensor]:
        return {"abc": torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)}

    def _logits(self, params, z):
        a, b, c = params["abc"].unbind()
        return a * F.logsigmoid(z) - b * F.logsigmoid(-z) + c

    def fit(self, logits: Any, labels: Any) -> BetaCalibrator:
        super().fit(logits, labels)
        a, b, _ = self.params_["abc"].tolist()
        if a < 0 or b < 0:  # the paper's rule: drop the offending term and refit the other two
            z, y = _logits_labels(logits, labels)
            keep = torch.tensor([float(a >= 0), float(b >= 0), 1.0], dtype=torch.float64)
            params = {"abc": (self.params_["abc"] * keep).requires_grad_(True)}
            optimizer = torch.optim.LBFGS([params["abc"]], lr=1.0, max_iter=self.max_iter, tolerance_grad=self.tol,
                                          tolerance_change=0.0, history_size=50, line_search_fn="strong_wolfe")

            def closure() -> torch.Tensor:
                optimizer.zero_grad()
                loss = self._nll(self._logits({"abc": params["abc"] * keep}, z), y)
                loss.backward()
                return loss

            optimizer.step(closure)
            closure()
            self.params_ = {"abc": (params["abc"] * keep).detach().clone()}
            self.grad_norm_ = float((params["abc"].grad * keep).abs().max())
            self.converged_ = self.grad_norm_ <= self.tol
            with torch.no_grad():
                self.nll_after_ = float(self._nll(self._logits(self.params_, z), y))
            self._check_divergence(z, y)
        return self

    @property
    def a_(self) -> float:
        self._check_fitted()
        return float(self.params_["abc"][0])

    @property
    def b_(self) -> float:
        self._check_fitted()
        return float(self.params_["abc"][1])

    @property
    def c_(self) -> float:
        self._check_fitted()
        return float(self.params_["abc"][2])


__all__ = ["BetaCalibrator", "ClasswiseTemperatureScaler", "DirichletCalibrator", "MatrixScaler", "VectorScaler"]
