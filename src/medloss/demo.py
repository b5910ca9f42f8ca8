"""``medloss demo``: the whole workflow on data that ships with the install (no download).

- binary: scikit-learn's breast-cancer set (malignant = positive), CE / weighted CE / focal /
  CE + soft-F1;
- ordinal: scikit-learn's diabetes progression binned into 4 severity grades (quartiles),
  cumulative link vs CE vs class-distance weighted CE;
- segmentation: generated 2-D images with a few small bright lesions, a small CNN trained with
  CE, Dice and the Asymmetric Unified Focal loss.

Every run calibrates on its validation split and reports test metrics before and after.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .workflow.evaluate import VERDICT_RULE
from .workflow.io import RunDirectory
from .workflow.pipeline import TrainConfig, finish, train_on_frame
from .workflow.report import Report, esc, figure_fonts, fmt, fmt_ci

BINARY_LOSSES = [("ce", None), ("ce", "balanced"), ("focal", None), ("0.5*ce+0.5*soft_f1", None)]
ORDINAL_LOSSES = ["cumulative_link", "ce", "cdw_ce"]
#: ``--quick`` (a smoke test of every section in ~15 s): two runs of each task
QUICK_BINARY, QUICK_ORDINAL = [BINARY_LOSSES[0], BINARY_LOSSES[2]], ORDINAL_LOSSES[:2]


def breast_cancer_frame() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    df = data.frame.copy()
    df["diagnosis"] = np.where(data.target == 0, "malignant", "benign")
    return df.drop(columns=["target"])


def diabetes_frame() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    data = load_diabetes(as_frame=True)
    df = data.frame.copy()
    df["grade"] = np.digitize(df["target"], np.quantile(df["target"], [0.25, 0.5, 0.75]))
    return df.drop(columns=["target"])


def lesion_images(n: int, size: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy images with 1-3 small bright discs (lesions, ~1-3 % of the pixels) and their masks."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = g.normal(0.0, 1.0, (n, 1, size, size)).astype(np.float32)
    masks = np.zeros((n, size, size), dtype=np.int64)
    for i in range(n):
        for _ in range(g.integers(1, 4)):
            cy, cx, r = g.integers(5, size - 5), g.integers(5, size - 5), g.uniform(1.5, 3.5)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            masks[i][disc] = 1
            images[i, 0][disc] += 1.5
    return torch.from_numpy(images), torch.from_numpy(masks)


class TinyUNet(nn.Module):
    def __init__(self, width: int = 12) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=2, dilation=2),
            nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


#: the mean per-image false-negative rate the demo's conformal mask threshold guarantees
CRC_ALPHA = 0.1


def _train_lesion_cnn(loss_fn: Any, x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int, *,
                      prior_bias: bool = False) -> nn.Module:
    """The demo's CNN trained with ``loss_fn``: Adam 3e-3, batches of 16 in a seeded order. ``prior_bias``: the
    output layer's bias starts at the lesion prior (Lin et al. 2017, the focal loss paper's initialisation), so
    that no loss spends its first epochs learning the class balance: cross-entropy then finds the lesions in 16
    epochs instead of ~48."""
    torch.manual_seed(seed)
    model = TinyUNet()
    if prior_bias:
        prior = float((y == 1).double().mean())
        with torch.no_grad():
            model.net[-1].bias.copy_(torch.tensor([0.0, math.log(prior / (1.0 - prior))]))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(16):
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    return model


def _lesion_counts(pred: torch.Tensor, y: torch.Tensor) -> tuple[int, int, int]:
    """Lesion TP, FP, FN pixels of predicted labels against the masks."""
    return (int(((pred == 1) & (y == 1)).sum()), int(((pred == 1) & (y == 0)).sum()),
            int(((pred == 0) & (y == 1)).sum()))


def dice_interval(pred: torch.Tensor, y: torch.Tensor, *, n_boot: int, seed: int) -> dict[str, Any]:
    """Lesion Dice over all test pixels, ``2 TP / (2 TP + FP + FN)``, with a 95% BCa bootstrap interval that
    resamples whole images (the pixels of an image are not independent), as the calibration tables' intervals."""
    from .calibration._intervals import bounds

    dims = tuple(range(1, pred.ndim))
    counts = np.stack([((pred == 1) & (y == 1)).sum(dims).numpy(), ((pred == 1) & (y == 0)).sum(dims).numpy(),
                       ((pred == 0) & (y == 1)).sum(dims).numpy()], 1).astype(np.float64)  # [images, TP/FP/FN]

    def dice(c: np.ndarray) -> np.ndarray:
        tp, fp, fn = c[..., 0], c[..., 1], c[..., 2]
        return 2 * tp / np.maximum(2 * tp + fp + fn, 1.0)

    n = len(counts)
    rng = np.random.default_rng(seed)
    boot = dice(counts[rng.integers(0, n, (n_boot, n))].sum(1))
    jack = dice(counts.sum(0)[None, :] - counts)  # each image left out
    estimate = float(dice(counts.sum(0)))
    low, high, interval, note = bounds(boot, estimate, jack, 0.95)
    return {"estimate": estimate, "low": low, "high": high, "level": 0.95, "n_boot": n_boot, "method": "images",
            "interval": interval, "note": note}


#: images of the segmentation comparison: training, test (Dice and its interval), conformal calibration
SEG_IMAGES = {"train": 96, "test": 64, "calibration": 48}


def segmentation_runs(seed: int, epochs: int, progress: bool, n_boot: int = 1000):
    from .calibration import ConformalSegmentation
    from .losses import AsymmetricUnifiedFocalLoss, CrossEntropyLoss, DiceLoss

    x_tr, y_tr = lesion_images(SEG_IMAGES["train"], seed=seed)
    x_te, y_te = lesion_images(SEG_IMAGES["test"], seed=seed + 1)
    x_cal, y_cal = lesion_images(SEG_IMAGES["calibration"], seed=seed + 2)  # of the conformal mask threshold
    results: list[dict[str, Any]] = []
    predictions: dict[str, torch.Tensor] = {}
    losses = {"ce": CrossEntropyLoss(), "dice": DiceLoss(include_background=False),
              "asymmetric_unified_focal": AsymmetricUnifiedFocalLoss()}
    for name, loss_fn in tqdm(losses.items(), desc="segmentation", unit="loss", disable=not progress, leave=False):
        t0 = time.perf_counter()
        model = _train_lesion_cnn(loss_fn, x_tr, y_tr, seed, epochs, prior_bias=True)
        with torch.no_grad():
            logits = model(x_te)
            pred = logits.argmax(1)
            cal_probs, test_probs = model(x_cal).softmax(1)[:, 1], logits.softmax(1)[:, 1]
        predictions[name] = pred[:3].clone()
        # conformal risk control: the threshold whose mean per-image false-negative rate is <= 0.1
        crc = ConformalSegmentation(alpha=CRC_ALPHA).fit(cal_probs, y_cal.bool())
        controlled = crc.evaluate(test_probs, y_te.bool())
        tp, fp, fn = _lesion_counts(pred, y_te)
        dice = dice_interval(pred, y_te, n_boot=n_boot, seed=seed)
        results.append({"loss": name, "lesion_dice": dice["estimate"], "lesion_dice_ci": dice,
                        "lesion_recall": tp / max(tp + fn, 1), "lesion_precision": tp / max(tp + fp, 1),
                        "conformal_fnr": {"alpha": CRC_ALPHA, "threshold": crc.threshold_,
                                          "test_mean_fnr": controlled["mean_fnr"],
                                          "test_mask_share": controlled["mask_share"],
                                          "n_calibration": crc.n_calibration_},
                        "seconds": time.perf_counter() - t0})
    return results, segmentation_figure(x_te[:3, 0], y_te[:3], predictions)


#: the losses compared in the train-time calibration study: name -> factory(task) (task "rows" or "images")
def _study_losses() -> dict[str, Any]:
    from .losses import (
        CrossEntropyLoss,
        DCALoss,
        FocalLoss,
        FocalLossAdaptive,
        MarginLabelSmoothingLoss,
        MDCALoss,
        NeighborAwareCalibrationLoss,
        SpatiallyVaryingLabelSmoothingLoss,
    )

    return {
        "ce": lambda task: CrossEntropyLoss(), "focal (gamma 3)": lambda task: FocalLoss(gamma=3.0),
        "label smoothing 0.1": lambda task: CrossEntropyLoss(label_smoothing=0.1),
        "FLSD-53": lambda task: FocalLossAdaptive(), "MDCA": lambda task: MDCALoss(),
        "DCA": lambda task: DCALoss(), "MbLS": lambda task: MarginLabelSmoothingLoss(),
        "SVLS": lambda task: SpatiallyVaryingLabelSmoothingLoss() if task == "images" else None,
        "NACL": lambda task: NeighborAwareCalibrationLoss() if task == "images" else None,
    }


def _calibration_scores(val_logits: torch.Tensor, val_y: torch.Tensor, test_logits: torch.Tensor,
                        test_y: torch.Tensor) -> dict[str, float]:
    """Test ECE and NLL before and after a temperature fitted on the validation rows."""
    import warnings

    from .calibration import TemperatureScaler, expected_calibration_error, negative_log_likelihood

    with warnings.catch_warnings():  # a separable validation split: reported as such, T stays where it stopped
        warnings.simplefilter("ignore")
        ts = TemperatureScaler().fit(val_logits.double(), val_y)
    before, after = test_logits.double().softmax(1), ts.predict_proba(test_logits.double())
    return {"ece": expected_calibration_error(before, test_y), "nll": negative_log_likelihood(before, test_y),
            "ece_ts": expected_calibration_error(after, test_y), "nll_ts": negative_log_likelihood(after, test_y),
            "temperature": ts.temperature_}


def _rows_run(loss_fn: Any, seed: int, epochs: int) -> dict[str, float]:
    """The breast-cancer MLP (30 -> 64 -> 32 -> 2, 60/20/20 split by seed) trained full-batch for ``epochs``."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, test_size=0.4, stratify=y, random_state=seed)
    x_va, x_te, y_va, y_te = train_test_split(x_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=seed)
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-12
    xs = [torch.tensor((a - mean) / std, dtype=torch.float32) for a in (x_tr, x_va, x_te)]
    ys = [torch.tensor(b) for b in (y_tr, y_va, y_te)]
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        opt.zero_grad()
        loss_fn(model(xs[0]), ys[0]).backward()
        opt.step()
    with torch.no_grad():
        val, test = model(xs[1]), model(xs[2])
    return {**_calibration_scores(val, ys[1], test, ys[2]), "quality": float((test.argmax(1) == ys[2]).double().mean())}


def _images_run(loss_fn: Any, seed: int, epochs: int) -> dict[str, float]:
    """The demo's lesion CNN trained on 96 generated images; pixels of 32 validation / 32 test images scored."""
    x_tr, y_tr = lesion_images(96, seed=seed)
    x_va, y_va = lesion_images(32, seed=seed + 100)
    x_te, y_te = lesion_images(32, seed=seed + 200)
    model = _train_lesion_cnn(loss_fn, x_tr, y_tr, seed, epochs)
    with torch.no_grad():
        val, test = model(x_va), model(x_te)

    def pixels(z: torch.Tensor) -> torch.Tensor:
        return z.movedim(1, -1).reshape(-1, z.shape[1])

    tp, fp, fn = _lesion_counts(test.argmax(1), y_te)
    return {**_calibration_scores(pixels(val), y_va.reshape(-1), pixels(test), y_te.reshape(-1)),
            "quality": 2 * tp / max(2 * tp + fp + fn, 1)}


def calibration_loss_study(seeds: list[int], epochs: int, seg_epochs: int, progress: bool = False,
                           tasks: tuple[str, ...] = ("rows", "images")) -> dict[str, list[dict[str, Any]]]:
    """Each train-time calibration loss against CE, focal and label smoothing, on the breast-cancer MLP ("rows":
    quality = test accuracy) and the lesion CNN ("images": quality = lesion Dice): per loss, the mean and standard
    deviation over ``seeds`` of test ECE and NLL before and after temperature scaling (fitted on validation)."""
    out: dict[str, list[dict[str, Any]]] = {task: [] for task in tasks}
    jobs = [(task, name, make) for task in tasks for name, make in _study_losses().items() if make(task) is not None]
    for task, name, make in tqdm(jobs, desc="calibration losses", unit="loss", disable=not progress, leave=False):
        runs = [(_rows_run if task == "rows" else _images_run)(make(task), seed,
                                                                 epochs if task == "rows" else seg_epochs)
                for seed in seeds]
        row: dict[str, Any] = {"loss": name, "n_seeds": len(runs)}
        for key in runs[0]:
            values = np.array([r[key] for r in runs])
            row[key], row[key + "_sd"] = float(values.mean()), float(values.std(ddof=1)) if len(runs) > 1 else 0.0
        out[task].append(row)
    return out


def study_table(rows: list[dict[str, Any]], quality: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows (mean ± sd) of a calibration-loss study table."""
    def cell(r: dict[str, Any], key: str) -> str:  # one seed has no spread to show
        return f"{r[key]:.3f}" if r["n_seeds"] < 2 else f"{r[key]:.3f} ± {r[key + '_sd']:.3f}"

    head = ["loss", quality, "ECE", "ECE after T", "NLL", "NLL after T", "T"]
    return head, [[r["loss"], *(cell(r, k) for k in ("quality", "ece", "ece_ts", "nll", "nll_ts")),
                   f"{r['temperature']:.3f}"] for r in rows]


def segmentation_figure(images: torch.Tensor, masks: torch.Tensor, predictions: dict[str, torch.Tensor]):
    """Rows: test images; columns: image, ground truth, then each loss's prediction."""
    from matplotlib.figure import Figure

    cols = 2 + len(predictions)
    fig = Figure(figsize=(2.3 * cols, 2.3 * len(images)))
    axes = fig.subplots(len(images), cols, squeeze=False)
    titles = ["image", "ground truth", *predictions]
    for i in range(len(images)):
        panels = [images[i], masks[i], *(p[i] for p in predictions.values())]
        for j, (ax, panel) in enumerate(zip(axes[i], panels, strict=True)):
            style = {"cmap": "gray"} if j == 0 else {"cmap": "magma", "vmin": 0, "vmax": 1}
            ax.imshow(panel.numpy(), **style)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=8)
    fig.tight_layout()
    return fig


def run_demo(out: str = "medloss-demo", *, force: bool = False, seed: int = 0, quick: bool = False,
             progress: bool = True, command: str = "medloss demo") -> Path:
    """Run every demo task and write one report to ``out``; returns the report folder."""
    t_start = time.perf_counter()
    # segmentation: 16 epochs from the prior-bias start train every loss, the cross-entropy baseline included (its
    # Dice at 16 epochs is within 0.01 of its Dice at 32)
    epochs, n_boot, seg_epochs = (15, 30, 3) if quick else (200, 300, 16)
    report = Report("medloss demo", dpi=64 if quick else 130)  # --quick: a smoke test, smaller images
    report.paragraph("Every run: stratified 60/20/20 split, preprocessing fitted on train, early stopping on the "
                     "validation loss, temperature scaling fitted on validation only, metrics on test.", note=True)
    report.said.add(VERDICT_RULE)  # stated once, in the summary
    summary: dict[str, Any] = {"binary": [], "ordinal": [], "segmentation": []}
    with RunDirectory(out, force=force) as run, figure_fonts():  # checked before any work
        df = breast_cancer_frame()
        binary, ordinal = (QUICK_BINARY, QUICK_ORDINAL) if quick else (BINARY_LOSSES, ORDINAL_LOSSES)
        jobs = [("binary", spec, w) for spec, w in binary] + [("ordinal", s, None) for s in ordinal]
        for task, spec, weights in tqdm(jobs, desc="medloss demo", unit="run", disable=not progress):
            frame = df if task == "binary" else diabetes_frame()
            cfg = TrainConfig(
                data="scikit-learn breast cancer" if task == "binary" else "scikit-learn diabetes (4 grades)",
                target="diagnosis" if task == "binary" else "grade", out=out, task=task, loss=spec,
                class_weights=weights, epochs=epochs, patience=20, seed=seed, n_boot=n_boot, progress=False,
                diagnostic_figures=not quick,  # --quick: the calibration figures only
                # severity grades: contiguous 90 % sets of grades (ordinal conformal prediction)
                conformal=0.1 if task == "ordinal" else None, conformal_method="ordinal",
            )
            label = f"{task}: {spec}" + (f" + {weights} class weights" if weights else "")
            section = label.replace(" ", "_").replace(":", "").replace("*", "x").replace("+", "plus")
            metrics = train_on_frame(frame, cfg, run, report, section=section, label=label)
            summary[task].append({"run": label, **metrics})
        summary["segmentation"], seg_fig = segmentation_runs(seed, seg_epochs, progress, n_boot=n_boot)
        summary["segmentation_epochs"] = seg_epochs
        # the classification half of the study (~10 s); the lesion CNN's needs ~40 epochs per loss and seed, beyond
        # the demo's time budget: benchmarks/bench_calibration_losses.py runs it (BENCHMARKS.md)
        study_epochs = 15 if quick else 400
        summary["calibration_losses"] = calibration_loss_study([seed], study_epochs, 0, progress=progress,
                                                               tasks=("rows",))
        _summary_tables(report, summary, seg_fig)
        _calibration_loss_section(report, summary["calibration_losses"], study_epochs)
        summary["demo_seconds"] = time.perf_counter() - t_start
        path = finish(report, run, summary, command)
    _print_summary(summary, path)
    return path


def segmentation_sentence(results: list[dict[str, Any]], epochs: int) -> str:
    """What the segmentation table shows, written from its numbers (never a claim they do not back)."""
    scores = "; ".join(f"{r['loss']} {r['lesion_dice']:.2f}" for r in results)
    found = [r["loss"] for r in results if r["lesion_dice"] >= 0.5]
    missed = [r["loss"] for r in results if r["lesion_dice"] < 0.05]
    text = f"Lesion Dice on the test images after {epochs} epochs: {scores}."
    if found:
        text += f" {', '.join(found)} found most of the lesions (Dice >= 0.5)."
    if missed:
        text += (f" {', '.join(missed)} predicted background almost everywhere (Dice < 0.05): "
                 "the lesions are too rare for its gradient" + (
                     " in so few epochs (a smoke test, not a comparison: the full demo trains every loss long enough "
                     "for cross-entropy to find the lesions)" if epochs < 30 else "") + ".")
    return text


def _rows(summary: dict[str, Any]) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    binary = []
    for r in summary["binary"]:
        b, a = r["test_uncalibrated"], r["test_calibrated"]
        binary.append([r["run"], fmt(a["classification"]["accuracy"], 3), fmt(a["classification"]["macro_f1"], 3),
                       fmt(a["classification"].get("roc_auc"), 3), fmt(b["calibration"]["ece"]["estimate"], 3),
                       fmt(a["calibration"]["ece"]["estimate"], 3), fmt(a["calibration"]["brier"]["estimate"], 3),
                       _verdict(r)])
    ordinal = []
    for r in summary["ordinal"]:
        b, a = r["test_uncalibrated"], r["test_calibrated"]
        conf = r.get("conformal") or {}
        ordinal.append([r["run"], fmt(a["ordinal"]["qwk"], 3), fmt(a["ordinal"]["mae"], 3),
                        fmt(a["ordinal"]["within_1"], 3), fmt(b["calibration"]["ece"]["estimate"], 3),
                        fmt(a["calibration"]["ece"]["estimate"], 3),
                        f"{fmt(conf.get('coverage'), 3)} / {fmt(conf.get('mean_set_size'), 3)}", _verdict(r)])
    seg = [[r["loss"], fmt_ci(r["lesion_dice_ci"], 3), fmt(r["lesion_recall"], 3), fmt(r["lesion_precision"], 3),
            f"{fmt(r['conformal_fnr']['threshold'], 3)} / {fmt(r['conformal_fnr']['test_mean_fnr'], 3)} / "
            f"{fmt(r['conformal_fnr']['test_mask_share'], 3)}"]
           for r in summary["segmentation"]]
    return binary, ordinal, seg


BIN_HEAD = ["binary run", "accuracy", "macro F1", "ROC AUC", "ECE before", "ECE after", "Brier after",
            "calibration verdict"]
ORD_HEAD = ["ordinal run", "QWK", "MAE", "within-1", "ECE before", "ECE after", "90% grade sets: coverage / size",
            "calibration verdict"]


def _verdict(run: dict[str, Any]) -> str:
    """The report's calibration verdict (one rule, stated once in the report)."""
    return run["calibration_check"]["verdict"]


SEG_HEAD = ["segmentation loss", "lesion Dice [95% CI]", "recall", "precision",
            f"FNR-controlled mask (alpha {CRC_ALPHA:g}): threshold / test mean FNR / mask share"]


def _summary_tables(report: Report, summary: dict[str, Any], seg_fig) -> None:
    binary, ordinal, seg = _rows(summary)
    first = len(report.parts)
    report.heading("Summary")
    report.table(BIN_HEAD, binary)
    report.table(ORD_HEAD, ordinal)
    report.paragraph(VERDICT_RULE, note=True)
    n = SEG_IMAGES
    report.paragraph(f"Segmentation: {n['train']} training and {n['test']} test images of 48 x 48 pixels with 1-3 "
                     "small lesions each (about 1.6 % of the pixels), a 4-layer CNN, the same seed, optimiser and "
                     "epochs for every loss. Dice over all test pixels, with a 95% BCa bootstrap interval over test "
                     "images. " + segmentation_sentence(summary["segmentation"], summary["segmentation_epochs"])
                     + f" The last column: the lesion-probability threshold chosen on {n['calibration']} calibration "
                     f"images by conformal risk control, so that on average at most {CRC_ALPHA:.0%} of an image's "
                     "lesion pixels are missed (ConformalSegmentation; a guarantee on the mean over images), with the "
                     f"mean false-negative rate and the share of pixels its mask takes on the {n['test']} test images.",
                     note=True)
    report.table(SEG_HEAD, seg)
    report.figure("segmentation_examples.png", seg_fig, "Three test images, their lesion masks and the predicted "
                  "masks of each segmentation loss.")
    # the summary goes first: move its parts to the front
    report.parts = report.parts[first:] + report.parts[:first]


def _calibration_loss_section(report: Report, study: dict[str, Any], epochs: int) -> None:
    report.heading("Train-time calibration losses")
    report.paragraph(
        f"The breast-cancer MLP ({epochs} full-batch epochs, one seed) trained with cross-entropy, focal loss, label "
        "smoothing and each train-time calibration loss (default arguments): test ECE and NLL before and after "
        "temperature scaling fitted on validation. A loss that calibrates while training lowers the ECE before "
        "scaling; after scaling the question is whether it still beats cross-entropy + temperature. One seed cannot "
        "separate them from noise, and the segmentation losses (SVLS, NACL) need the lesion CNN trained ~40 epochs "
        "per loss: `python benchmarks/bench_calibration_losses.py` runs both models over 5 seeds (its table is in "
        "BENCHMARKS.md).", note=True)
    report.table(*study_table(study["rows"], "test accuracy"))


def _print_summary(summary: dict[str, Any], path: Path) -> None:
    binary, ordinal, seg = _rows(summary)
    for head, rows in ((BIN_HEAD, binary), (ORD_HEAD, ordinal), (SEG_HEAD, seg)):
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
        print()
        print("  ".join(str(h).ljust(w) for h, w in zip(head, widths, strict=True)))
        for row in rows:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    print(f"\nreport: {path / 'report.html'}  ({summary['demo_seconds']:.0f} s)")


__all__ = ["esc", "lesion_images", "run_demo"]
