"""The model, the loss it is trained with, and the training loop with early stopping."""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..losses import CombinedLoss, CORNLoss, CumulativeLinkLoss, class_weights, get_loss, parse_loss_spec
from ..losses.registry import _loss_entry
from .io import UserError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds the legacy global generator that third-party code may use
    torch.manual_seed(seed)


class MLP(nn.Module):
    """Fully connected network: [Linear -> BatchNorm -> ReLU -> Dropout] x len(hidden) -> Linear."""

    def __init__(self, n_in: int, n_out: int, hidden: tuple[int, ...] = (64, 32), *, dropout: float = 0.1,
                 batch_norm: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_in
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers += [nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass
class LossSetup:
    """A training loss together with how the network's output maps to class probabilities."""

    loss: nn.Module
    output: str  # "class_logits" | "score" | "conditional_logits"
    n_out: int
    task: str
    num_classes: int
    spec: str

    def log_probabilities(self, out: torch.Tensor) -> torch.Tensor:
        """Log class probabilities ``[N, K]`` (binary: ``[N]`` positive-class *logits*)."""
        if self.output == "score":
            head = self._find(CumulativeLinkLoss)
            return head.log_class_probabilities(out)
        if self.output == "conditional_logits":
            head = self._find(CORNLoss)
            return torch.log(head.class_probabilities(out).clamp_min(1e-300))
        if self.task == "binary":
            return out[:, 0]
        return torch.log_softmax(out, 1)

    def _find(self, cls: type) -> Any:
        mods = self.loss.terms.values() if isinstance(self.loss, CombinedLoss) else [self.loss]
        for m in mods:
            if isinstance(m, cls):
                return m
        raise RuntimeError(f"no {cls.__name__} in the loss")  # pragma: no cover


def _tabular_loss(name: str, task: str, num_classes: int, weights: torch.Tensor | None) -> torch.nn.Module:
    """The registered loss ``name`` for a tabular model of ``task``, or a UserError if it cannot train one."""
    entry = _loss_entry(name)
    if "segmentation" in entry.tasks and "classification" not in entry.tasks or "detection" in entry.tasks:
        raise UserError(f"loss {name!r} is for {', '.join(entry.tasks)}, not tabular classification")
    if entry.output == "coral_logits":
        # CORAL's K - 1 logits are rank-consistent only from its own layer (one shared score, K - 1
        # biases); from an MLP's independent outputs its grade probabilities can be negative
        raise UserError(f"loss {name!r} needs a CORAL output layer, which `medloss train` does not build; "
                        "use 'cumulative_link' (the same shared-score model with learned thresholds) or 'corn'")
    kwargs: dict[str, Any] = {}
    if entry.accepts("mode"):
        kwargs["mode"] = "binary" if task == "binary" else "multiclass"
    if entry.accepts("num_classes"):
        kwargs["num_classes"] = num_classes
    if name == "cumulative_link":
        kwargs["learn_cutpoints"] = True
        kwargs["scale"] = 4.0
    if weights is not None and entry.weight_arg:
        kwargs[entry.weight_arg] = weights
    return get_loss(name, **kwargs)


def build_loss(spec: str, task: str, num_classes: int, y_train: np.ndarray, weighting: str | None) -> LossSetup:
    """Build ``spec`` ("focal", "0.5*ce+0.5*soft_f1", ...) for the task, with optional class weights."""
    try:
        terms = parse_loss_spec(spec)
    except ValueError as err:
        raise UserError(f"--loss: {err}") from None
    outputs = {_loss_entry(name).output for _, name in terms}
    if len(outputs) > 1:
        needs = ", ".join(sorted(outputs))
        raise UserError(f"--loss {spec!r} mixes losses that need different network outputs ({needs})")
    output = outputs.pop()
    if output != "class_logits" and task != "ordinal":
        raise UserError(f"--loss {spec!r} is an ordinal loss: use --task ordinal")
    weights = None
    if weighting:
        try:
            weights = class_weights(y_train, num_classes, weighting, absent="zero")
        except ValueError as err:
            raise UserError(f"--class-weights: {err}") from None
    modules = {name: (_tabular_loss(name, task, num_classes, weights), w) for w, name in terms}
    loss = next(iter(modules.values()))[0] if len(modules) == 1 and terms[0][0] == 1.0 else CombinedLoss(modules)
    n_out = _loss_entry(terms[0][1]).n_outputs(num_classes, binary=task == "binary")
    return LossSetup(loss, output, n_out, task, num_classes, spec)


def _loss_value(setup: LossSetup, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if setup.task == "binary" and setup.output == "class_logits":
        return setup.loss(out[:, 0], y.float())
    return setup.loss(out, y)


@dataclass
class TrainResult:
    model: nn.Module
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    stopped: str = ""


def _finite(out: torch.Tensor, epoch: int, lr: float) -> torch.Tensor:
    """The model's outputs, or a one-line error when training has diverged (NaN / Inf outputs)."""
    if not bool(torch.isfinite(out).all()):
        raise UserError(
            f"training diverged in epoch {epoch + 1}: the model's outputs are no longer finite (learning rate "
            f"{lr:g}); try a lower --lr, e.g. --lr {min(lr / 100, 1e-3):g}"
        )
    return out


def train(
    setup: LossSetup,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    hidden: tuple[int, ...] = (64, 32),
    dropout: float = 0.1,
    batch_norm: bool = True,
    epochs: int = 200,
    patience: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    checkpoint: str | os.PathLike,
    progress: bool = True,
    desc: str = "training",
) -> TrainResult:
    """Train with early stopping on the validation loss, keeping the best weights in ``checkpoint``
    (a state dict written atomically with ``torch.save`` and read back with ``weights_only=True``).
    Ctrl-C stops training early and keeps the best checkpoint; every row is used (no ``drop_last``)."""
    seed_everything(seed)
    model = MLP(x_train.shape[1], setup.n_out, hidden, dropout=dropout, batch_norm=batch_norm)
    params = [*model.parameters(), *setup.loss.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    xv, yv = torch.from_numpy(x_val), torch.from_numpy(y_val)
    gen = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
    best, best_epoch, bad_epochs, stopped = math.inf, 0, 0, "max epochs"
    ckpt = Path(checkpoint)

    def save() -> None:
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "loss": setup.loss.state_dict()}, tmp)
        os.replace(tmp, ckpt)

    bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress, leave=False)
    try:
        for epoch in bar:
            model.train()
            total, count = 0.0, 0
            for idx in torch.randperm(len(xt), generator=gen).split(batch_size):
                if len(idx) == 1 and len(xt) > 1:  # BatchNorm needs two rows: fold a lone last row in
                    continue
                opt.zero_grad()
                loss = _loss_value(setup, _finite(model(xt[idx]), epoch, lr), yt[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            model.eval()
            with torch.no_grad():
                val = float(_loss_value(setup, _finite(model(xv), epoch, lr), yv))
            history["train_loss"].append(total / max(count, 1))
            history["val_loss"].append(val)
            bar.set_postfix(train=f"{history['train_loss'][-1]:.4f}", val=f"{val:.4f}")
            if val < best - 1e-7:
                best, best_epoch, bad_epochs = val, epoch + 1, 0
                save()
            else:
                bad_epochs += 1
                if bad_epochs >= patience:
                    stopped = f"early stopping (no validation improvement for {patience} epochs)"
                    break
    except KeyboardInterrupt:
        stopped = "interrupted (Ctrl-C); continuing with the best checkpoint"
    finally:
        bar.close()
    if not ckpt.exists():
        save()
    state = torch.load(ckpt, weights_only=True)
    model.load_state_dict(state["model"])
    setup.loss.load_state_dict(state["loss"])
    model.eval()
    return TrainResult(model, history, best_epoch, stopped)


def predict_log_probabilities(setup: LossSetup, model: nn.Module, x: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return setup.log_probabilities(model(torch.from_numpy(x))).double()
