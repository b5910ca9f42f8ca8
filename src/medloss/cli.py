"""The ``medloss`` command line: ``demo``, ``train``, ``predict``, ``calibrate``, ``losses``."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from collections.abc import Sequence


def _cmd_losses(args: argparse.Namespace) -> int:
    from .losses import available_losses

    entries = available_losses()
    width = max(len(e.name) for e in entries)
    print(f"{'name':<{width}}  {'tasks':<28}  description")
    for e in entries:
        print(f"{e.name:<{width}}  {', '.join(e.tasks):<28}  {e.description}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import workflow  # noqa: F401  (says which extra to install when the workflow's are missing)
    from .demo import run_demo

    run_demo(args.out, force=args.force, seed=args.seed, quick=args.quick, progress=not args.no_progress,
             command=args.command_line)
    return 0


def _hidden(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer widths such as 64,32; got {text!r}"
        ) from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"layer widths must be positive integers; got {text!r}")
    return widths


def _columns(text: str) -> tuple[str, ...]:
    columns = tuple(c.strip() for c in text.split(","))
    if "" in columns:
        raise argparse.ArgumentTypeError(f"expected comma-separated column names; got {text!r}")
    return columns


def _grades(text: str) -> tuple[str, ...]:
    grades = tuple(g.strip() for g in text.split(","))
    if len(grades) < 2 or "" in grades or len(set(grades)) != len(grades):
        raise argparse.ArgumentTypeError(f"expected at least 2 distinct comma-separated grades in order; got {text!r}")
    return grades


def _positive(cast: type, kind: str):
    """argparse type: a number > 0 of type ``cast``, with an error that shows what was given."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind}; got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind}; got {text!r}")
        return value

    return parse


_positive_int = _positive(int, "integer")
_positive_float = _positive(float, "number")


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed in [0, 2**32 - 1]; got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer seed in [0, 2**32 - 1]; got {text!r}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a dropout probability in [0, 1); got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a dropout probability in [0, 1); got {text!r}")
    return value


SEED_HELP = "random seed (an integer in [0, 2**32 - 1]; default 0): the same seed and data give the same numbers"


class Terminated(Exception):
    """SIGTERM: stop now and leave nothing half-written (unlike Ctrl-C during training, which keeps
    the best checkpoint and finishes the report)."""


def _cmd_train(args: argparse.Namespace) -> int:
    from .workflow.pipeline import TrainConfig, run_train

    cfg = TrainConfig(
        data=args.data, target=args.target, out=args.out, task=args.task, binarize=args.binarize,
        num_classes=args.num_classes, grades=args.grades, features=args.features, exclude=args.exclude or (),
        id_column=args.id_column, loss=args.loss, class_weights=args.class_weights,
        calibrator=args.calibrator,
        hidden=args.hidden, dropout=args.dropout, batch_norm=not args.no_batch_norm, epochs=args.epochs,
        patience=args.patience,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, n_boot=args.n_boot, n_bins=args.n_bins,
        force=args.force,
        progress=not args.no_progress, command=args.command_line, subgroup=args.subgroup,
        conformal=args.conformal,
        conformal_method=args.conformal_method or ("ordinal" if args.task == "ordinal" else "aps"),
    )
    path = run_train(cfg)
    _warn_if_calibration_hurt(args.command, path)
    print(f"report: {path / 'report.html'}")
    return 0


def _warn_if_calibration_hurt(command: str, path) -> None:
    """Say on stderr, too, when calibration hurt on the held-out split or could not be fitted (the report says it
    first, with the rule)."""
    import json

    from .workflow.evaluate import why_uncalibrated

    check = json.loads((path / "metrics.json").read_text()).get("calibration_check")
    if check and check["recommended"] == "uncalibrated":
        print(f"medloss {command}: warning: {why_uncalibrated(check)}; the report recommends the uncalibrated "
              "probabilities", file=sys.stderr)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .workflow.pipeline import CalibrateConfig, run_calibrate

    cfg = CalibrateConfig(predictions=args.predictions, out=args.out, val=args.val, calibrator=args.calibrator,
                          n_boot=args.n_boot, n_bins=args.n_bins, seed=args.seed, force=args.force,
                          command=args.command_line,
                          subgroup=args.subgroup, conformal=args.conformal, conformal_method=args.conformal_method,
                          progress=not args.no_progress)
    path = run_calibrate(cfg)
    _warn_if_calibration_hurt(args.command, path)
    print(f"report: {path / 'report.html'}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .workflow.predict import PredictConfig, run_predict

    result = run_predict(PredictConfig(run=args.run, data=args.data, out=args.out, id=args.id, force=args.force,
                                       probabilities=args.probabilities, sets=args.sets))
    print(f"predictions: {result.path} ({result.probabilities} probabilities, {result.reason})")
    return 0


#: the calibrators `medloss train / calibrate` can fit (medloss.workflow.evaluate.CALIBRATORS)
CALIBRATOR_CHOICES = ("temperature", "classwise_temperature", "vector", "matrix", "dirichlet", "platt", "beta",
                      "isotonic", "auto")


def _probability_open(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="medloss",
        description="Losses for imbalanced and ordinal medical labels, and calibration you can trust.",
        epilog="Docs: README.md and docs/ (workflow.md describes the file formats).",
    )
    parser.add_argument("--version", action="version", version=f"medloss {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("losses", help="list the registered losses")
    p.add_argument("--no-progress", action="store_true", help="accepted by every command (losses shows no bar)")
    p.set_defaults(func=_cmd_losses)

    p = sub.add_parser("demo", help="the whole workflow on data that ships with the install; writes a report")
    p.add_argument("--out", default="medloss-demo", help="report folder (default ./medloss-demo)")
    p.add_argument("--force", action="store_true", help="replace an existing --out folder")
    p.add_argument("--quick", action="store_true", help="fewer epochs and resamples (a smoke test)")
    p.add_argument("--seed", type=_seed, default=0, help=SEED_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("train", help="train an MLP on a CSV / Parquet table, calibrate, evaluate, report")
    p.add_argument("--data", required=True, help="CSV or Parquet file, one row per patient / case")
    p.add_argument("--target", required=True, help="name of the target column")
    p.add_argument("--task", choices=("binary", "multiclass", "ordinal"), default="binary",
                   help="binary (two classes; see --binarize), multiclass (unordered classes) or ordinal (ordered "
                   "grades 0..K-1, evaluated with QWK, MAE, ...) (default binary)")
    p.add_argument("--binarize", metavar="median|VALUE", help="binary task from a continuous target: y > threshold")
    p.add_argument("--num-classes", type=_positive_int, help="declared number of classes / grades (labels 0..K-1)")
    p.add_argument("--grades", type=_grades, metavar="G1,G2,...",
                   help="--task ordinal: the grades in order, e.g. 1,2,3,4 or mild,moderate,severe (default: the "
                   "sorted distinct integer values of the target; a grade named here that never occurs keeps its "
                   "place)")
    p.add_argument("--features", type=_columns, metavar="COL1,COL2,...",
                   help="the feature columns (default: every column but the target, --exclude, --id-column and "
                   "identifier-like columns, each excluded with a notice)")
    p.add_argument("--exclude", type=_columns, metavar="COL1,COL2,...", help="columns that are not features")
    p.add_argument("--id-column", metavar="COL", help="the row identifier: not a feature, carried to `medloss "
                   "predict`'s output (default: the first identifier-like column: named id, *_id, uuid, ..., "
                   "text unique per row, or integers numbering the rows)")
    p.add_argument("--loss", default="ce", help="a registered loss (see `medloss losses`) or a weighted sum "
                   "such as '0.5*ce+0.5*soft_f1' (default ce)")
    p.add_argument("--class-weights", choices=("balanced", "inverse", "effective_number"),
                   help="per-class weights from the training labels (default none)")
    p.add_argument("--calibrator", choices=CALIBRATOR_CHOICES, default="temperature",
                   help="post-hoc calibrator fitted on the validation split (default temperature; see "
                   "`medloss calibrate --help`)")
    p.add_argument("--hidden", type=_hidden, default=(64, 32), help="MLP layer widths (default 64,32)")
    p.add_argument("--dropout", type=_probability, default=0.1,
                   help="dropout probability in [0, 1) after each hidden layer (default 0.1)")
    p.add_argument("--no-batch-norm", action="store_true", help="no batch normalisation after the hidden layers")
    p.add_argument("--epochs", type=_positive_int, default=200, help="maximum epochs (default 200)")
    p.add_argument("--patience", type=_positive_int, default=20, help="early-stopping patience (default 20)")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="(default 64)")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    p.add_argument("--seed", type=_seed, default=0, help=SEED_HELP + " (splits, initialisation, batches)")
    p.add_argument("--n-boot", type=_positive_int, default=1000, help="bootstrap resamples for CIs (default 1000)")
    p.add_argument("--n-bins", type=_positive_int, default=15,
                   help="equal-width confidence bins of the ECE / MCE tables and the reliability diagram (default 15)")
    p.add_argument("--subgroup", metavar="COL", help="a column of --data, e.g. site or sex (binary tasks): the report "
                   "adds calibration-in-the-large, slope and ICI on the test split per value, with intervals")
    p.add_argument("--conformal", metavar="ALPHA", type=_probability_open,
                   help="conformal prediction sets with coverage >= 1 - ALPHA on the test split (half of the "
                   "validation split calibrates them, the other half fits the calibrator)")
    p.add_argument("--conformal-method", choices=("lac", "aps", "raps", "ordinal"),
                   help="score of the conformal sets (default: ordinal intervals for --task ordinal, else aps)")
    p.add_argument("--out", required=True, help="output folder (must not exist unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing --out folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("predict", help="apply a trained run (preprocessing, model, calibrator) to new rows")
    p.add_argument("--run", required=True, help="a folder written by `medloss train`")
    p.add_argument("--data", required=True, help="CSV or Parquet with the training feature columns (a target "
                   "column, if present, is ignored)")
    p.add_argument("--out", required=True, help="CSV to write: one row per input row, the probabilities "
                   "prob_<class> and the predicted class (must not exist unless --force)")
    p.add_argument("--id", "--id-column", dest="id", help="column to carry through to the output (default: the "
                   "run's id column, else a column named 'id' that the model did not use as a feature)")
    p.add_argument("--probabilities", choices=("auto", "calibrated", "uncalibrated"), default="auto",
                   help="which probabilities to write (default auto: those the run's report recommends, calibrated "
                   "unless the calibrator made the test NLL worse); the choice is printed")
    p.add_argument("--sets", action="store_true", help="also write the conformal prediction set of each row "
                   "(column prediction_set, class names joined by |), for a run trained with --conformal")
    p.add_argument("--force", action="store_true", help="replace an existing --out file (a predictions file "
                   "medloss wrote)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (accepted by every command; "
                   "predict shows none)")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("calibrate", help="audit and calibrate predictions from any model (logits or probabilities)")
    p.add_argument("--predictions", required=True, help="CSV / Parquet / NPZ of logits or probabilities + labels")
    p.add_argument("--val", help="a second file of the same format to fit the calibrator on (recommended)")
    p.add_argument("--method", "--calibrator", dest="calibrator", choices=CALIBRATOR_CHOICES, default="temperature",
                   help="temperature (one T for all classes; default), classwise_temperature, vector, matrix, "
                   "dirichlet (multiclass; richer, need more validation rows), platt or beta (binary, one logit), "
                   "isotonic (monotone, non-parametric), or auto: the family with the best 5-fold cross-validated NLL "
                   "on the validation rows (the simplest within one standard error), its table in the report. "
                   "--calibrator is the same option")
    p.add_argument("--conformal", metavar="ALPHA", type=_probability_open,
                   help="also build conformal prediction sets with coverage >= 1 - ALPHA (e.g. 0.1); the "
                   "validation rows are halved between the calibrator and the conformal quantile")
    p.add_argument("--conformal-method", choices=("lac", "aps", "raps", "ordinal"), default="aps",
                   help="score of the conformal sets: lac (smallest sets), aps (adaptive; default), raps, or ordinal "
                   "(contiguous intervals of ordered grades)")
    p.add_argument("--n-boot", type=_positive_int, default=1000, help="bootstrap resamples for CIs (default 1000)")
    p.add_argument("--n-bins", type=_positive_int, default=15,
                   help="equal-width confidence bins of the ECE / MCE tables and the reliability diagram (default 15)")
    p.add_argument("--seed", type=_seed, default=0, help=SEED_HELP + " (the 50/50 split, the bootstrap)")
    p.add_argument("--subgroup", metavar="COL", help="a column (NPZ: an array) of --predictions, e.g. site or sex: the "
                   "report adds calibration-in-the-large, slope and ICI per value, with intervals (binary predictions)")
    p.add_argument("--out", required=True, help="output folder (must not exist unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing --out folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_calibrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ._errors import UserError

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    args.command_line = "medloss " + " ".join(shlex.quote(a) for a in argv)

    def terminate(signum, frame):  # noqa: ARG001
        raise Terminated

    in_main_thread = threading.current_thread() is threading.main_thread()  # signals: main thread only
    previous = signal.signal(signal.SIGTERM, terminate) if in_main_thread else None
    try:
        return int(args.func(args))
    except UserError as err:
        print(f"medloss {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ImportError as err:  # an optional dependency of this command is missing: say which extra
        if "medloss[" not in str(err):
            raise
        print(f"medloss {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a read-only or full disk, a permission: one line, and the run folder was removed
        where = f" ({err.filename})" if err.filename else ""
        print(f"medloss {args.command}: error: cannot write the outputs{where}: {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"medloss {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Terminated:
        print(f"medloss {args.command}: terminated (SIGTERM); nothing was written", file=sys.stderr)
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
