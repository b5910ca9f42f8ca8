"""Run by tests/test_implementation.py in a process of its own with TRITON_INTERPRET=1 (Triton's interpreter runs
the kernels on CPU tensors): bad-label counts, determinism, the number of kernel launches of each loss that runs
on the kernels (its gradient against the PyTorch implementation's) and second derivatives. Their values and
gradients against the float64 references: tests/test_conformance.py. Exits non-zero on a failure."""

import os
import sys

assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"

import torch  # noqa: E402
import triton.runtime.interpreter as interpreter  # noqa: E402

import medloss  # noqa: E402
from medloss.losses import (  # noqa: E402
    AsymmetricFocalLoss,
    AsymmetricFocalTverskyLoss,
    AsymmetricUnifiedFocalLoss,
    ComboLoss,
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    HybridFocalLoss,
    JaccardLoss,
    MCCLoss,
    SymmetricFocalLoss,
    SymmetricFocalTverskyLoss,
    SymmetricUnifiedFocalLoss,
    TverskyLoss,
)
from medloss.ops.triton_softmax_stats import softmax_stats_triton  # noqa: E402

LAUNCHES = {"n": 0}
_call = interpreter.GridExecutor.__call__


def _counting_call(self, *args, **kwargs):
    LAUNCHES["n"] += 1
    return _call(self, *args, **kwargs)


interpreter.GridExecutor.__call__ = _counting_call


def case(spatial, c, dtype, ignored, absent, extreme, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c, *spatial, generator=g, dtype=torch.float64) * 3
    if extreme:
        x = x.sign() * 1e4
    t = torch.randint(0, c, (2, *spatial), generator=g)
    if absent:
        t = t.clamp(max=max(0, c - 2))  # the last class absent from the target
    if ignored:
        t.view(2, -1)[:, ::3] = -100
    return x.to(dtype), t


def main() -> int:
    # bad labels are counted, ignore_index is not
    x, t = torch.randn(1, 3, 4, 4), torch.randint(0, 3, (1, 4, 4))
    t[0, 0, :3] = torch.tensor([7, -100, -5])
    assert int(softmax_stats_triton(x, t, -100, 0, None, 0.0, 0.0, 0.5)[2]) == 2
    # determinism: the same bits twice
    x, t = case((16, 16), 4, torch.float32, True, False, False, 0)
    a = softmax_stats_triton(x, t, -100, 2, None, 0.0, 0.0, 0.7)
    b = softmax_stats_triton(x, t, -100, 2, None, 0.0, 0.0, 0.7)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    # launches per forward + backward of each loss running on the kernels
    x, t = case((16, 16), 4, torch.float32, True, False, False, 1)
    for loss in (DiceLoss(), JaccardLoss(), TverskyLoss(), FocalTverskyLoss(), GeneralizedDiceLoss(), MCCLoss(),
                 DiceLoss(batch=True), ComboLoss(), SymmetricFocalTverskyLoss(), AsymmetricFocalTverskyLoss(),
                 SymmetricUnifiedFocalLoss(), AsymmetricUnifiedFocalLoss(), HybridFocalLoss(), FocalLoss(),
                 CrossEntropyLoss(), SymmetricFocalLoss(), AsymmetricFocalLoss()):
        xs = x.clone().requires_grad_(True)
        with medloss.implementation("triton"):
            LAUNCHES["n"] = 0
            loss(xs, t).backward()
            launches = LAUNCHES["n"]
        with medloss.implementation("pytorch"):
            xr = x.clone().requires_grad_(True)
            expected = loss(xr, t)
            expected.backward()
        torch.testing.assert_close(xs.grad, xr.grad, rtol=1e-4, atol=1e-6)
        assert launches == 2, (type(loss).__name__, launches)
        print(f"launches: {type(loss).__name__} forward + backward = {launches}")
    # second derivatives (create_graph=True) come from the defining formula, as on the other implementations
    x64 = case((5, 4), 3, torch.float64, True, False, False, 2)[0].requires_grad_(True)
    t = case((5, 4), 3, torch.float64, True, False, False, 2)[1]
    for loss in (DiceLoss(), ComboLoss(), AsymmetricUnifiedFocalLoss(), FocalLoss(gamma=2.0)):
        second = {}
        for name in ("triton", "pytorch"):
            with medloss.implementation(name):
                (g,) = torch.autograd.grad(loss(x64, t), x64, create_graph=True)
                (second[name],) = torch.autograd.grad((g * g).sum(), x64)
        torch.testing.assert_close(second["triton"], second["pytorch"], rtol=1e-5, atol=1e-8)
    xb64 = torch.randn(2, 1, 5, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64).requires_grad_(True)
    tb64 = (torch.rand(2, 1, 5, 4, generator=torch.Generator().manual_seed(8)) > 0.5).double()
    second = {}
    for name in ("triton", "pytorch"):
        with medloss.implementation(name):
            (g,) = torch.autograd.grad(DiceLoss(mode="binary")(xb64, tb64), xb64, create_graph=True)
            (second[name],) = torch.autograd.grad((g * g).sum(), xb64)
    torch.testing.assert_close(second["triton"], second["pytorch"], rtol=1e-5, atol=1e-8)
    print("second derivatives: equal the PyTorch implementation's")
    xb = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    tb = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(6)) > 0.5).float()
    for loss in (DiceLoss(mode="binary"), TverskyLoss(mode="multilabel"), MCCLoss(mode="binary"),
                 FocalLoss(mode="binary"), FocalLoss(mode="multilabel", reduction="none")):
        xs = xb.clone().requires_grad_(True)
        with medloss.implementation("triton"):
            LAUNCHES["n"] = 0
            loss(xs, tb).sum().backward()
            launches = LAUNCHES["n"]
        assert launches == 2, (type(loss).__name__, launches)
        print(f"launches: {type(loss).__name__}({loss.mode}) forward + backward = {launches}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
