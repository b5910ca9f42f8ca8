"""Import cost of the core: `import medloss.losses` (and the calibration metrics) against
`import monai.losses`, in fresh interpreters.

Run: python benchmarks/bench_import.py   (needs the `bench` extra for MONAI)

Two figures per module: the wall time of `python -c "import X"` minus that of `python -c "pass"`,
and the cumulative time `python -X importtime` reports for X itself; medians of 7 runs, and the
number of modules the import loads. Both libraries import torch, which dominates: a third row
shows `import torch` alone.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time

from _harness import machine_line, markdown_table, write_section

TARGETS = ["torch", "medloss.losses", "medloss.calibration", "monai.losses"]


def wall(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - t0


def importtime(module: str) -> tuple[float, int]:
    """Cumulative microseconds of ``module``'s own import line and the number of modules loaded."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], check=True,
                         capture_output=True, text=True).stderr
    rows = [re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line) for line in out.splitlines()]
    rows = [r for r in rows if r]
    cumulative = max(int(r.group(2)) for r in rows if r.group(4) == module)
    return cumulative / 1e6, len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    base = statistics.median(wall("pass") for _ in range(args.repeats))
    rows = []
    for module in TARGETS:
        try:
            __import__(module)
        except ImportError:
            rows.append([f"`import {module}`", "not installed", "-", "-"])
            continue
        walls = [wall(f"import {module}") - base for _ in range(args.repeats)]
        cum = [importtime(module) for _ in range(args.repeats)]
        rows.append([f"`import {module}`", f"{statistics.median(walls):.2f}",
                     f"{statistics.median(c[0] for c in cum):.2f}", str(cum[0][1])])
        print(rows[-1], flush=True)
    table = markdown_table(["import", "wall s (minus bare python)", "-X importtime cumulative s", "modules"], rows)
    print(table)
    body = ("## Import time of the core\n\n"
            f"Command: `python benchmarks/bench_import.py` ({args.repeats} fresh interpreters each, median; "
            f"{machine_line()}). The core imports torch, numpy and scipy only (no pandas, matplotlib, "
            "scikit-learn or tqdm: `tests/test_lean_install.py`).\n\n" + table)
    if not args.no_write:
        write_section("import", body)


if __name__ == "__main__":
    main()
