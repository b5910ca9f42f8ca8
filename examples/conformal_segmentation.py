"""Conformal risk control of a segmentation mask's false-negative rate, on generated lesion images.

An imperfect "model" gives each pixel a lesion probability (logits +-2.5 inside / outside the lesion,
blurred edges, per-image difficulty, pixel noise, and a shift of -1: it under-segments, as models trained
on rare lesion pixels tend to). ConformalSegmentation chooses the mask threshold on
200 calibration images so that, on average over new images, at most alpha = 10 % of the lesion pixels
are missed; the 0.5 threshold gives no such promise. Writes the figure of docs/calibration.md:

    python examples/conformal_segmentation.py --out docs/img/conformal_segmentation.png
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from medloss.calibration import ConformalSegmentation, save_figure


def lesion_images(n: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with 0-3 disk lesions and an imperfect, under-segmenting model's lesion probabilities."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((n, size, size), dtype=bool)
    logits = np.empty((n, size, size))
    for i in range(n):
        dist = np.full((size, size), np.inf)
        for _ in range(rng.integers(0, 4)):
            cy, cx, r = rng.uniform(4, size - 4), rng.uniform(4, size - 4), rng.uniform(2, 6)
            d = np.hypot(yy - cy, xx - cx) - r
            masks[i] |= d <= 0
            dist = np.minimum(dist, d)
        edge = np.tanh(-np.clip(dist, -10, 10) / 1.5)
        logits[i] = 2.5 * edge * rng.uniform(0.4, 1.2) - 1.0 + rng.normal(0, 1.0, (size, size))
    return torch.from_numpy(1 / (1 + np.exp(-logits))), torch.from_numpy(masks)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="conformal_segmentation.png", help="the figure to write")
    parser.add_argument("--alpha", type=float, default=0.1)
    args = parser.parse_args(argv)
    probs, masks = lesion_images(400)
    cal, test = slice(0, 200), slice(200, 400)
    crc = ConformalSegmentation(alpha=args.alpha).fit(probs[cal], masks[cal])
    chosen = crc.evaluate(probs[test], masks[test])
    half = ConformalSegmentation(alpha=args.alpha)  # the same report for the usual 0.5 threshold
    half.threshold_, half.n_calibration_ = 0.5, 0
    at_half = half.evaluate(probs[test], masks[test])
    print(f"threshold 0.5:   mean FNR {at_half['mean_fnr']:.3f}, mask share {at_half['mask_share']:.3f}")
    print(f"threshold {crc.threshold_:.3f} (conformal, alpha {args.alpha}): mean FNR {chosen['mean_fnr']:.3f}, "
          f"mask share {chosen['mask_share']:.3f}")

    from matplotlib.figure import Figure

    shown = [i for i in range(200, 400) if masks[i].any()][:3]
    fig = Figure(figsize=(9.2, 2.4 * len(shown)))
    axes = fig.subplots(len(shown), 4, squeeze=False)
    titles = ["lesion probability", "true lesion", "mask p >= 0.5",
              f"mask p >= {crc.threshold_:.3f}\n(FNR <= {args.alpha:g} on average)"]
    for r, (row, i) in enumerate(zip(axes, shown, strict=True)):
        panels = [probs[i], masks[i], probs[i] >= 0.5, crc.predict_masks(probs[i:i + 1])[0]]
        for j, (ax, panel) in enumerate(zip(row, panels, strict=True)):
            ax.imshow(panel.double().numpy(), cmap="magma", vmin=0, vmax=1)
            if j >= 2:  # the lesion pixels the mask misses, outlined in cyan
                missed = (masks[i] & ~panel).numpy()
                ax.contour(missed, levels=[0.5], colors="cyan", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[j], fontsize=8)
    fig.suptitle(f"test images: mean FNR {at_half['mean_fnr']:.2f} at 0.5, {chosen['mean_fnr']:.2f} at the conformal "
                 f"threshold (cyan: missed lesion pixels)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, args.out, dpi=110)
    return {"threshold": crc.threshold_, "at_threshold": chosen, "at_half": at_half}


if __name__ == "__main__":
    main()
