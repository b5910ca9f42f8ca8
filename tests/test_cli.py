import subprocess
import sys

import pytest

from medloss.cli import main
from medloss.losses import available_losses


def test_losses_lists_every_registered_loss(capsys):
    assert main(["losses"]) == 0
    out = capsys.readouterr().out
    for entry in available_losses():
        assert entry.name in out and entry.description in out
    assert {"ce", "focal", "soft_f1", "giou"} <= {e.name for e in available_losses()}


def test_console_script_and_help():
    r = subprocess.run([sys.executable, "-m", "medloss.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("losses", "demo", "train", "calibrate"):
        assert command in r.stdout
    assert main([]) == 2


@pytest.mark.parametrize("argv", [
    ["losses"], ["demo"], ["train", "--data", "d.csv", "--target", "y", "--out", "o"],
    ["predict", "--run", "r", "--data", "d.csv", "--out", "p.csv"],
    ["calibrate", "--predictions", "p.csv", "--out", "o"],
])
def test_every_command_accepts_no_progress(argv):
    from medloss.cli import build_parser

    assert build_parser().parse_args([*argv, "--no-progress"]).no_progress is True
