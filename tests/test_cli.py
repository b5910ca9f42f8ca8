import subprocess
import sys

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
    assert "losses" in r.stdout and "demo" in r.stdout
    assert main([]) == 2


def test_quick_demo_runs_and_reports_sane_metrics(capsys):
    from medloss.demo import run_quick_demo

    results = run_quick_demo(epochs=3, seed=0)
    assert set(results) == {"ce", "weighted ce", "focal (gamma 2)", "0.5 ce + 0.5 soft-F1"}
    for r in results.values():
        assert 0.85 <= r["accuracy"] <= 1.0 and 0.9 <= r["roc_auc"] <= 1.0
    again = run_quick_demo(epochs=3, seed=0)
    assert again == results  # same seed, same numbers
    assert "Breast cancer" in capsys.readouterr().out
