"""A small end-to-end example on data that ships with scikit-learn (no download)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .losses import CombinedLoss, FocalLoss, class_weights, cross_entropy_loss


def _breast_cancer_splits(seed: int):
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    # malignant (0 in scikit-learn) is the positive, clinically relevant class
    x, y = data.data.astype(np.float32), (data.target == 0).astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)
    scaler = StandardScaler().fit(x_tr)  # fitted on the training split only
    return scaler.transform(x_tr).astype(np.float32), y_tr, scaler.transform(x_te).astype(np.float32), y_te


def _train(loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(x.shape[1], 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx].float().unsqueeze(1)).backward()
            opt.step()
    return model


def run_quick_demo(epochs: int = 30, seed: int = 0) -> dict[str, dict[str, float]]:
    """Train a small MLP on the breast-cancer set with several losses and print test metrics."""
    from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, roc_auc_score

    x_tr, y_tr, x_te, y_te = _breast_cancer_splits(seed)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    w = class_weights(yt, 2, "balanced")
    losses = {
        "ce": cross_entropy_loss(mode="binary"),
        "weighted ce": cross_entropy_loss(mode="binary", weight=w),
        "focal (gamma 2)": FocalLoss(mode="binary", gamma=2.0),
        "0.5 ce + 0.5 soft-F1": CombinedLoss.from_spec("0.5*ce+0.5*soft_f1", mode="binary"),
    }
    results: dict[str, dict[str, float]] = {}
    for name, loss_fn in tqdm(losses.items(), desc="training", unit="loss"):
        model = _train(loss_fn, xt, yt, epochs, seed)
        with torch.no_grad():
            prob = torch.sigmoid(model(torch.from_numpy(x_te))).squeeze(1).numpy()
        pred = (prob >= 0.5).astype(int)
        results[name] = {
            "accuracy": accuracy_score(y_te, pred),
            "f1": f1_score(y_te, pred),
            "roc_auc": roc_auc_score(y_te, prob),
            "brier": brier_score_loss(y_te, prob),
        }
    print(f"\nBreast cancer (scikit-learn), malignant = positive; {len(y_tr)} train / {len(y_te)} test")
    print(f"{'loss':<22}{'accuracy':>10}{'F1':>8}{'ROC AUC':>10}{'Brier':>8}")
    for name, r in results.items():
        print(f"{name:<22}{r['accuracy']:>10.3f}{r['f1']:>8.3f}{r['roc_auc']:>10.3f}{r['brier']:>8.4f}")
    return results
