"""The core (losses, metrics, calibration metrics and calibrators) works without the optional
dependencies: a subprocess blocks pandas, pyarrow, matplotlib, scikit-learn and tqdm
and uses the core; what needs them says which extra to install."""

import subprocess
import sys
import textwrap

BLOCKER = textwrap.dedent('''
    import sys
    # a None entry makes `import x` raise ModuleNotFoundError and importlib.util.find_spec(x) return None,
    # exactly as if the package were not installed
    for name in ("pandas", "pyarrow", "matplotlib", "sklearn", "tqdm"):
        sys.modules[name] = None
''')


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=300)


def test_core_works_without_optional_dependencies():
    out = _run('''
        import torch, numpy as np
        import medloss, medloss.losses, medloss.metrics, medloss.calibration
        from medloss.losses import DiceLoss, FocalLoss, CumulativeLinkLoss
        from medloss.metrics import quadratic_weighted_kappa
        from medloss.calibration import TemperatureScaler, bootstrap_ci, expected_calibration_error

        x, t = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
        DiceLoss()(x, t); FocalLoss()(x, t); CumulativeLinkLoss(3)(torch.randn(5, 1), torch.tensor([0, 1, 2, 1, 0]))
        quadratic_weighted_kappa(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 1]))
        logits = 3 * torch.randn(200, 3)
        labels = torch.distributions.Categorical(logits=logits).sample()
        TemperatureScaler().fit(logits, labels)
        expected_calibration_error(logits.softmax(1), labels)
        bootstrap_ci("ece", logits.softmax(1), labels, n_boot=20, progress=True)  # no tqdm: no bar
        loaded = [m for m in ("pandas", "pyarrow", "matplotlib", "sklearn", "tqdm") if sys.modules.get(m) is not None]
        print("core ok", loaded)
    ''')
    assert out.returncode == 0, out.stderr
    assert "core ok []" in out.stdout


def test_optional_features_name_their_extra():
    out = _run('''
        import torch
        from medloss.calibration import IsotonicCalibrator, plot_reliability_diagram

        def message(fn):
            try:
                fn()
            except ImportError as err:
                return str(err)
            return "no error"

        probs, labels = torch.softmax(torch.randn(50, 3), 1), torch.randint(0, 3, (50,))
        print("PLOT:", message(lambda: plot_reliability_diagram((probs, labels))))
        print("ISO:", message(lambda: IsotonicCalibrator().fit(torch.randn(50, 3), labels)))
        print("WORKFLOW:", message(lambda: __import__("medloss.workflow")))
    ''')
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.strip().splitlines())
    assert "needs matplotlib" in lines["PLOT"] and "medloss[plot]" in lines["PLOT"]
    assert "needs scikit-learn" in lines["ISO"] and "medloss[cli]" in lines["ISO"]
    assert "medloss[cli]" in lines["WORKFLOW"]


def test_cli_without_its_extra_says_which_to_install():
    code = '''
        import sys
        from medloss.cli import main
        sys.exit(main(sys.argv[1:]))
    '''
    assert _run(code, "--version").stdout.startswith("medloss ")
    assert _run(code, "losses").returncode == 0
    out = _run(code, "demo", "--quick", "--out", "nowhere")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "pip install 'medloss[cli]'" in out.stderr
