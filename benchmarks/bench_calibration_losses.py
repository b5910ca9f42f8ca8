"""Train-time calibration losses: what each buys. The demo's breast-cancer MLP and its lesion CNN trained with
cross-entropy, focal loss, label smoothing and each train-time calibration loss (FLSD-53, MDCA, DCA, MbLS, and
for the images SVLS and NACL), over several seeds: test ECE and NLL before and after temperature scaling (fitted
on the validation split), and accuracy / lesion Dice, as mean ± standard deviation over the seeds.

Run: python benchmarks/bench_calibration_losses.py [--seeds 5] [--epochs 400] [--seg-epochs 60]
"""

from __future__ import annotations

import argparse
import time

from _harness import machine_line, markdown_table, write_section
from medloss.demo import calibration_loss_study, study_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=400, help="full-batch epochs of the MLP")
    parser.add_argument("--seg-epochs", type=int, default=60, help="epochs of the lesion CNN")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    t0 = time.perf_counter()
    study = calibration_loss_study(list(range(args.seeds)), args.epochs, args.seg_epochs, progress=True)
    seconds = time.perf_counter() - t0
    tables = {}
    for task, quality in (("rows", "test accuracy"), ("images", "lesion Dice")):
        head, rows = study_table(study[task], quality)
        tables[task] = markdown_table(head, rows)
        print(tables[task], "\n")
    body = (
        "## Train-time calibration losses: what each buys\n\n"
        f"Command: `python benchmarks/bench_calibration_losses.py --seeds {args.seeds} --epochs {args.epochs} "
        f"--seg-epochs {args.seg_epochs}` ({machine_line()}; {time.strftime('%Y-%m-%d')}; {seconds:.0f} s). "
        "Mean ± standard deviation over "
        f"{args.seeds} seeds (split, initialisation, batches). ECE: 15-bin top-label; T: the temperature fitted on "
        "validation (> 1: the model was over-confident). Default arguments of every loss.\n\n"
        f"Breast cancer (scikit-learn), MLP 30-64-32-2, 60/20/20 split, Adam 1e-3, {args.epochs} full-batch epochs "
        "(long enough to over-fit):\n\n" + tables["rows"] + "\n\n"
        f"Generated lesion images (the demo's), 4-layer CNN, 96 training / 32 validation / 32 test images of 48 x 48 "
        f"pixels, {args.seg_epochs} epochs; ECE / NLL over the test pixels:\n\n" + tables["images"])
    if not args.no_write:
        write_section("calibration_losses", body)


if __name__ == "__main__":
    main()
