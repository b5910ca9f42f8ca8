"""Wall time of the README's main job, `medloss demo`, on this machine.

Run: python benchmarks/bench_demo.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import machine_line, markdown_table, write_section


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for args in ([], ["--quick"]):
            out = Path(tmp) / ("demo" + "".join(args).replace("-", "_"))
            cmd = [sys.executable, "-m", "medloss.cli", "demo", "--out", str(out), "--no-progress", *args]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            rows.append(["medloss demo " + " ".join(args), f"{time.perf_counter() - t0:.1f}"])
    table = markdown_table(["command", "wall time (s), process start to report written"], rows)
    print(table)
    write_section("demo", "## `medloss demo` wall time\n\n"
                  f"Command: `python benchmarks/bench_demo.py` ({machine_line()})\n\n" + table
                  + "\n\nTarget (issue 6): a few minutes at most on 2 cores.")


if __name__ == "__main__":
    main()
