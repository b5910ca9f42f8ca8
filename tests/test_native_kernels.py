"""The compiled kernels (medloss/_kernels.c) against the PyTorch implementation of the same
losses (itself checked against float64 transcriptions of the papers in test_segmentation_losses),
gradcheck through the kernels, label checks, threading and fallbacks."""

import os

import pytest
import torch

import medloss
from medloss.losses import (
    AsymmetricFocalLoss,
    AsymmetricFocalTverskyLoss,
    AsymmetricUnifiedFocalLoss,
    ComboLoss,
    DiceLoss,
    FocalTverskyLoss,
    HybridFocalLoss,
    SymmetricFocalLoss,
    SymmetricFocalTverskyLoss,
    SymmetricUnifiedFocalLoss,
    TverskyLoss,
)
from medloss.ops import cpu_kernel as _native

needs_kernels = pytest.mark.skipif(
    not _native.native_kernels_available(),
    reason="compiled kernels not built (no C compiler at install) or disabled by MEDLOSS_NATIVE=0",
)

SOFTMAX_LOSSES = [
    DiceLoss, TverskyLoss, FocalTverskyLoss, ComboLoss, SymmetricFocalLoss, AsymmetricFocalLoss,
    SymmetricFocalTverskyLoss, AsymmetricFocalTverskyLoss, SymmetricUnifiedFocalLoss,
    AsymmetricUnifiedFocalLoss, HybridFocalLoss,
]


def test_kernels_built_where_required():
    # `make test` (and so CI) sets MEDLOSS_REQUIRE_NATIVE=1: the kernels must have been compiled, or the speed
    # figures in BENCHMARKS.md would not describe what CI tests
    if os.environ.get("MEDLOSS_REQUIRE_NATIVE") == "1":
        assert medloss.native_kernels_available()
    assert medloss.native_kernels_available() == _native.native_kernels_available()


def both_paths(loss, x, t):
    """(value, gradient) with the kernels on and off."""
    out = []
    for enabled in (True, False):
        with medloss.implementation("auto" if enabled else "pytorch"):
            leaf = x.detach().clone().requires_grad_(True)
            value = loss(leaf, t)
            # reduction="none": a weighted sum, so that each entry's gradient is checked
            (value if value.ndim == 0 else value * torch.arange(1.0, value.numel() + 1).view_as(value)).sum().backward()
            out.append((value.detach(), leaf.grad))
    return out


def assert_paths_agree(loss, x, t, rtol=1e-5, atol=1e-6):
    (v1, g1), (v0, g0) = both_paths(loss, x, t)
    torch.testing.assert_close(v1, v0, rtol=rtol, atol=atol)
    torch.testing.assert_close(g1, g0, rtol=rtol, atol=atol)


@needs_kernels
@pytest.mark.parametrize("cls", SOFTMAX_LOSSES)
@pytest.mark.parametrize("shape", [(2, 3, 17, 13), (2, 4, 5, 6, 7), (3, 2, 301), (1, 5, 1000)])
def test_kernels_equal_pytorch_path(cls, shape):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * 3
    t = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    assert_paths_agree(cls(), x, t, rtol=1e-10, atol=1e-12)
    assert_paths_agree(cls(), x.float(), t)


@needs_kernels
@pytest.mark.parametrize("cls", SOFTMAX_LOSSES)
def test_kernels_with_ignore_index_and_batch(cls):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 20, 30, generator=g, dtype=torch.float64)
    t = torch.randint(0, 4, (3, 20, 30), generator=g)
    t[0, :5] = -100
    t[2] = -100  # a whole image ignored
    assert_paths_agree(cls(), x, t, rtol=1e-10, atol=1e-12)
    assert_paths_agree(cls(ignore_index=2), x, t.clamp_min(0), rtol=1e-10, atol=1e-12)
    if cls not in (SymmetricFocalLoss, AsymmetricFocalLoss):
        assert_paths_agree(cls(batch=True), x, t, rtol=1e-10, atol=1e-12)


@needs_kernels
def test_region_options_through_kernels():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 5, 9, 11, generator=g, dtype=torch.float64)
    t = torch.randint(0, 5, (2, 9, 11), generator=g)
    w = torch.tensor([0.1, 1.0, 2.0, 0.5, 3.0])
    for loss in (DiceLoss(include_background=False), DiceLoss(weight=w), TverskyLoss(alpha=0.9, beta=0.1),
                 DiceLoss(ignore_empty=True), DiceLoss(reduction="none"), FocalTverskyLoss(gamma=1.5),
                 SymmetricFocalLoss(reduction="sum"), SymmetricUnifiedFocalLoss(gamma=0.0, delta=0.5),
                 HybridFocalLoss(focal_weight=torch.tensor([0.2, 1.0, 1.0, 0.4, 2.0]), focal_gamma=0.5),
                 ComboLoss(alpha=0.3, beta=0.8, include_background=False)):
        assert_paths_agree(loss, x, t, rtol=1e-10, atol=1e-12)


@needs_kernels
@pytest.mark.parametrize("cls", SOFTMAX_LOSSES)
def test_kernels_at_extreme_logits(cls):
    # +-1e4: one class takes all the mass, the others underflow; the weighted CE's log(1 - p) of
    # the confident class and the focal term's log p_t must stay exact (finite, equal to PyTorch's)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64).sign() * 1e4
    t = torch.randint(0, 3, (2, 8, 8), generator=g)
    (v1, g1), (v0, g0) = both_paths(cls(), x, t)
    assert torch.isfinite(v1) and torch.isfinite(g1).all()
    torch.testing.assert_close(v1, v0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(g1, g0, rtol=1e-9, atol=1e-12)
    (v1, g1), (v0, g0) = both_paths(cls(), x.float(), t)
    assert torch.isfinite(v1) and torch.isfinite(g1).all()
    torch.testing.assert_close(v1, v0, rtol=1e-5, atol=1e-5)


@needs_kernels
def test_combo_confident_mistake_matches_closed_form():
    # logits [0, 30, 0] with target 0: 1 - p_1 = (e^0 + e^0) / z = 2 / (e^30 + 2), so
    # log(1 - p_1) = log 2 - logsumexp(x) ~ -29.3; a float32 1 - p_1 would be 0 and its log -inf
    x = torch.tensor([[[0.0], [30.0], [0.0]]])
    t = torch.tensor([[0]])
    loss = ComboLoss(alpha=1.0, beta=0.5)  # the weighted CE alone
    with medloss.implementation("auto"):
        value = loss(x, t)
    xd = x.double()[0, :, 0]
    logp = torch.log_softmax(xd, 0)
    log1m = torch.log(torch.tensor(2.0, dtype=torch.float64)) - torch.logsumexp(xd, 0)
    expected = -(0.5 * logp[0] + 0.5 * (log1m + torch.log1p(-logp[2].exp()))) / 3
    torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-6)


@needs_kernels
@pytest.mark.parametrize("cls", [DiceLoss, SymmetricUnifiedFocalLoss, AsymmetricUnifiedFocalLoss, ComboLoss,
                                 HybridFocalLoss, AsymmetricFocalLoss])
def test_gradcheck_through_kernels(cls):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 3, (2, 4, 5), generator=g)
    t[1, 0] = -100
    with medloss.implementation("auto"):
        assert torch.autograd.gradcheck(lambda z: cls()(z, t), (x,))


@needs_kernels
def test_gradient_scaled_by_incoming_gradient():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 10, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 3, (2, 10), generator=g)
    loss = SymmetricUnifiedFocalLoss()
    (loss(x, t) * 3.5).backward()
    g35 = x.grad.clone()
    x.grad = None
    loss(x, t).backward()
    torch.testing.assert_close(g35, 3.5 * x.grad)


@needs_kernels
@pytest.mark.parametrize("target", [torch.tensor([[0, 3, 1]]), torch.tensor([[0, -1, 1]])])
def test_out_of_range_labels_raise_the_validation_error(target):
    x = torch.randn(1, 3, 3)
    for cls in (DiceLoss, SymmetricFocalLoss, ComboLoss, SymmetricUnifiedFocalLoss):
        with pytest.raises(ValueError, match=r"class indices in \[0, 2\]"):
            cls()(x, target)


@needs_kernels
def test_threads_and_pthread_fallback_give_the_same_sums(monkeypatch):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(3, 4, 70, 70, generator=g)
    t = torch.randint(0, 4, (3, 70, 70), generator=g)
    ref = _native.softmax_pass(x.double(), t, stats=True).stats
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            for gomp in (_native._GOMP_PARALLEL, None):
                monkeypatch.setattr(_native, "_GOMP_PARALLEL", gomp)
                stats = _native.softmax_pass(x, t, stats=True).stats
                torch.testing.assert_close(stats, ref, rtol=1e-5, atol=1e-3)
    finally:
        torch.set_num_threads(previous)


@needs_kernels
def test_tile_edges_and_tiny_inputs():
    # images shorter than a tile, lengths that are not a multiple of the tile or the vector width
    for shape in [(1, 2, 1), (1, 2, 7), (2, 3, 127), (2, 3, 129), (1, 32, 65), (5, 2, 4097)]:
        g = torch.Generator().manual_seed(shape[-1])
        x = torch.randn(*shape, generator=g, dtype=torch.float64)
        t = torch.randint(0, shape[1], (shape[0], shape[2]), generator=g)
        assert_paths_agree(DiceLoss(), x, t, rtol=1e-10, atol=1e-12)
        assert_paths_agree(SymmetricUnifiedFocalLoss(), x, t, rtol=1e-10, atol=1e-12)


def test_unsupported_inputs_use_the_pytorch_path():
    x33 = torch.randn(1, 33, 4)  # more classes than the kernels take
    assert not _native.usable(x33)
    assert not _native.usable(torch.randn(1, 3, 4).half())
    assert not _native.usable(torch.randn(1, 1, 4))
    t = torch.randint(0, 33, (1, 4))
    value = DiceLoss()(x33, t)
    assert torch.isfinite(value)
    with medloss.implementation("pytorch"):
        assert not _native.usable(torch.randn(1, 3, 4))


def test_nan_logits_still_raise():
    x = torch.full((1, 2, 2), float("nan"))
    t = torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="NaN"):
        SymmetricFocalLoss()(x, t)


@needs_kernels
@pytest.mark.parametrize("alpha,weight", [(None, None), (0.25, None), (None, torch.tensor([0.1, 2.0, 0.5])),
                                          (0.25, torch.tensor([0.1, 2.0, 0.5]))])
@pytest.mark.parametrize("normalize", ["elements", "weights"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_loss_on_images_through_kernels(alpha, weight, normalize, gamma):
    from medloss.losses import FocalLoss

    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 9, 10, generator=g, dtype=torch.float64) * 4
    t = torch.randint(0, 3, (2, 9, 10), generator=g)
    t[0, 0] = -100
    for reduction in ("mean", "sum"):
        loss = FocalLoss(alpha=alpha, weight=weight, gamma=gamma, normalize=normalize, reduction=reduction)
        assert_paths_agree(loss, x, t, rtol=1e-10, atol=1e-12)
    # gamma 0 with per-class weights and weights normalisation is PyTorch's weighted cross-entropy
    if gamma == 0.0 and normalize == "weights" and weight is not None and alpha is None:
        with medloss.implementation("auto"):
            ours = FocalLoss(weight=weight, gamma=0.0, normalize="weights")(x, t)
        expected = torch.nn.functional.cross_entropy(x, t, weight=weight.double(), ignore_index=-100)
        torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)


# --- the kernel boundary: scratch on the heap, arguments checked before pointers cross, layout checked


@needs_kernels
def test_kernel_runs_on_small_thread_stacks():
    """float64 with 32 classes needed ~245 KB of stack scratch, which crashed threads with small
    stacks; the scratch now lives on the heap. A 192 KB Python thread and OMP_STACKSIZE=128K."""
    import subprocess
    import sys
    import threading

    x = torch.randn(2, 32, 40, 40, dtype=torch.float64)
    t = torch.randint(0, 32, (2, 40, 40))
    expected = DiceLoss()(x, t)
    result = {}

    def work():
        result["value"] = DiceLoss()(x, t)

    old = threading.stack_size(192 * 1024)
    try:
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    finally:
        threading.stack_size(old)
    torch.testing.assert_close(result["value"], expected)
    code = (
        "import torch; from medloss.losses import DiceLoss; torch.set_num_threads(2);"
        "x = torch.randn(2, 32, 64, 64, dtype=torch.float64, requires_grad=True);"
        "DiceLoss()(x, torch.randint(0, 32, (2, 64, 64))).backward(); print('ok')"
    )
    env = {**os.environ, "OMP_STACKSIZE": "128K", "MEDLOSS_REQUIRE_NATIVE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@needs_kernels
@pytest.mark.parametrize("bad,message", [
    (lambda x, t: (x.transpose(2, 3), t), "contiguous"),
    (lambda x, t: (x.half(), t), "float32 or float64"),
    (lambda x, t: (x, t.int()), r"`?t`? must be a CPU"),
    (lambda x, t: (x, t[:, :-1]), "entries"),
    (lambda x, t: (x[:, :1].contiguous(), t), "2-32 classes"),
])
def test_kernel_boundary_checks_its_arguments(bad, message):
    from medloss.ops import cpu_kernel as _native

    x = torch.randn(2, 3, 4, 4)
    t = torch.randint(0, 3, (2, 16))
    xb, tb = bad(x, t)
    with pytest.raises(ValueError, match=message):
        _native.softmax_pass(xb, tb, None, stats=True)


@needs_kernels
def test_loader_refuses_a_kernel_whose_field_layout_differs(monkeypatch):
    """Same total size and field count, one field of another type: the size check alone would accept it."""
    import ctypes

    from medloss.ops import cpu_kernel as _native

    lib = ctypes.CDLL(_native._LIB._name)
    assert _native.layout_matches(lib)
    fields = [(n, ctypes.c_int16 if n == "use_ignore" else c) for n, c in _native.PassArgs._fields_]

    class Moved(ctypes.Structure):
        _fields_ = fields

    assert ctypes.sizeof(Moved) == ctypes.sizeof(_native.PassArgs)
    monkeypatch.setattr(_native, "PassArgs", Moved)
    assert not _native.layout_matches(lib)
