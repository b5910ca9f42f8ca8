"""examples/ddp_segmentation.py under ``torchrun --nproc_per_node=2`` (CPU, gloo), checked against one
process: the same training on the concatenated batches (``distributed=False``) must give the DDP run's
weights, and the evaluation of those weights on the whole validation set its ECE and temperature."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).parents[1] / "examples" / "ddp_segmentation.py"
ARGS = ["--epochs", "2", "--train-images", "26", "--val-images", "9", "--global-batch", "7"]


def _example():
    spec = importlib.util.spec_from_file_location("ddp_segmentation", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: torch 2.13's gloo backend now and then aborts a rank at interpreter exit, after the script has
#: finished and written its results (C++ "terminate called without an active exception", no Python
#: frame; seen in ~5 % of runs on a loaded 2-core machine, with medloss's functional collectives and
#: with torch.distributed.nn's alike). Such a run is repeated once; every assertion below still applies.
TEARDOWN_ABORT = "terminate called without an active exception"


def _run_example(out):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(EXAMPLE), *ARGS, "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_example")
    proc = _run_example(out)
    finished = "rank 0:" in proc.stdout and "rank 1:" in proc.stdout and (out / "metrics.json").exists()
    if proc.returncode != 0 and TEARDOWN_ABORT in proc.stderr and finished:
        out = tmp_path_factory.mktemp("ddp_example_again")
        proc = _run_example(out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, proc.stdout


def test_ddp_example_equals_one_process_on_the_global_batches(ddp_run):
    out, stdout = ddp_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["weights_identical_on_all_ranks"]
    assert "rank 0:" in stdout and "rank 1:" in stdout
    ex = _example()
    args = ex.parse_args(ARGS)
    x, y = ex.synthetic_images(args.train_images, args.size, args.seed)
    torch.manual_seed(args.seed)
    model = ex.small_unet()
    criterion = ex.AsymmetricUnifiedFocalLoss(batch=True, distributed=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    history = ex.train(model, criterion, optimizer, x, y, args, 0, 1, torch.device("cpu"))
    assert history == pytest.approx(metrics["train_loss"], rel=1e-5)
    ddp_weights = torch.load(out / "model.pt", weights_only=True)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(ddp_weights[name], value, rtol=1e-4, atol=1e-5, msg=name)

    # the DDP run's distributed metrics are those of its weights on the whole validation set
    model.load_state_dict(ddp_weights)
    model.eval()
    x_val, y_val = ex.synthetic_images(args.val_images, args.size, args.seed + 1)
    with torch.no_grad():
        logits = model(x_val).movedim(1, -1).reshape(-1, 3).double()
    labels = y_val.reshape(-1)
    ece = ex.expected_calibration_error(torch.softmax(logits, 1), labels, n_bins=15)
    scaler = ex.TemperatureScaler().fit(logits, labels)
    assert metrics["val_ece"] == pytest.approx(ece, rel=1e-5)
    assert metrics["temperature"] == pytest.approx(scaler.temperature_, rel=1e-5)
    assert metrics["val_pixel_accuracy"] == pytest.approx(float((logits.argmax(1) == labels).double().mean()))
