"""The ``medloss`` command line."""

from __future__ import annotations

import argparse
import sys
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
    from .demo import run_quick_demo

    run_quick_demo(epochs=args.epochs, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="medloss",
        description="Losses for imbalanced and ordinal medical labels, and calibration you can trust.",
    )
    parser.add_argument("--version", action="version", version=f"medloss {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("losses", help="list the registered losses")
    p.set_defaults(func=_cmd_losses)

    p = sub.add_parser("demo", help="train on data that ships with the install and print the results")
    p.add_argument("--epochs", type=int, default=30, help="training epochs per loss (default 30)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"medloss {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"medloss {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
