"""Exact global losses under torch.distributed: 2 and 3 CPU processes on the gloo
backend, uneven shards, ignored pixels on one rank, a rank whose image has no foreground. Each rank's
loss must equal the single-process loss of the concatenated batch, and its shard's gradient (divided
by the world size, as DDP averages) the single-process gradient (1e-10 in float64)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import ddp_worker  # noqa: E402

WORKER = Path(__file__).parent / "ddp_worker.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=[2, 3], ids=["2 ranks", "3 ranks"])
def ranks(request, tmp_path_factory):
    world = request.param
    out = tmp_path_factory.mktemp(f"ddp{world}")
    port = str(_free_port())
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(r), str(world), port, str(out / f"{r}.pt")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(world)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    return [torch.load(out / f"{r}.pt", weights_only=False) for r in range(world)]


@pytest.mark.parametrize("case", list(ddp_worker.CASES) + [f"{c}@compiled" for c in ddp_worker.COMPILED])
def test_global_loss_and_gradient_equal_one_process(ranks, case):
    """``name@compiled``: the same case under ``torch.compile(fullgraph=True)`` on every rank."""
    x, t = ddp_worker.global_batch()
    loss_fn = ddp_worker.CASES[case.split("@")[0]]()
    loss_fn.distributed = False  # the same loss, one process, the whole batch
    xs = x.clone().requires_grad_(True)
    expected = loss_fn(xs, t)
    expected.backward()
    for r in ranks:
        value, grad = r["results"][case]
        torch.testing.assert_close(value, expected.detach(), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad, xs.grad[r["start"]:r["stop"]], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("metric", list(ddp_worker.METRICS))
def test_metric_over_all_ranks_equals_one_process(ranks, metric):
    p, y, w = ddp_worker.global_predictions()
    expected = ddp_worker.METRICS[metric](p, y, w, False)
    for r in ranks:
        assert r["metrics"][metric] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_distributed_without_a_process_group_is_an_error():
    from medloss.losses import DiceLoss

    with pytest.raises(RuntimeError, match=r"DiceLoss\(distributed=True\) needs an initialised torch.distributed"):
        DiceLoss(distributed=True)(torch.randn(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    from medloss.calibration import expected_calibration_error

    with pytest.raises(RuntimeError, match=r"expected_calibration_error\(distributed=True\) needs"):
        expected_calibration_error(torch.rand(5), torch.tensor([0, 1, 0, 1, 1]), distributed=True)
    from medloss.metrics import quadratic_weighted_kappa

    with pytest.raises(ValueError, match=r"distributed=True needs num_classes"):
        quadratic_weighted_kappa([0, 1, 2], [0, 1, 1], distributed=True)
    with pytest.raises(ValueError, match=r"needs binning='uniform'"):
        expected_calibration_error(torch.rand(5), torch.tensor([0, 1, 0, 1, 1]), binning="quantile", distributed=True)


def _loss_class(case):
    """The loss a case wraps (a CombinedLoss: its first term, the first to need the process group)."""
    loss = ddp_worker.CASES[case]()
    loss = getattr(loss, "loss", loss)
    return type(next(iter(loss.terms.values()))) if hasattr(loss, "terms") else type(loss)


def test_every_registered_loss_is_tested_distributed():
    """The registry is the list: a newly registered loss needs ``distributed`` and a case above."""
    from medloss.losses import available_losses

    tested = {_loss_class(case) for case in ddp_worker.CASES}
    # medloss's own losses (a user's, e.g. the one register_loss's docstring example registers, are theirs)
    import medloss.losses

    for entry in (e for e in available_losses() if e.factory.__name__ in medloss.losses.__all__):
        assert entry.accepts("distributed"), f"{entry.name} takes no `distributed` argument"
        assert entry.factory in tested, f"{entry.name} ({entry.factory.__name__}) has no case in tests/ddp_worker.py"


@pytest.mark.parametrize("case", list(ddp_worker.CASES))
def test_every_distributed_loss_needs_a_process_group(case):
    x, t = ddp_worker.global_batch()
    name = _loss_class(case).__name__
    with pytest.raises(RuntimeError, match=rf"{name}\(distributed=True\) needs an initialised torch.distributed"):
        ddp_worker.CASES[case]()(x, t)

