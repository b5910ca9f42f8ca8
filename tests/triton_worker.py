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
    AsymmetricUnifiedFocalLoss,
    ComboLoss,
    CrossEntropyLoss,
    CumulativeLinkLoss,
    DiceLoss,
    FocalLoss,
    available_losses,
    get_loss,
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
    # the launch budget: every segmentation loss of the registry, in every mode it takes, forward + backward
    # in at most 4 kernel launches (the statistics / focal kernels one each way, Combo's sigmoid modes both),
    # its gradient equal to the PyTorch implementation's; plus the focal losses' label smoothing
    x, t = case((16, 16), 4, torch.float32, True, False, False, 1)
    xb = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    tb = (torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(6)) > 0.5).float()
    inputs = {"multiclass": (x, t), "binary": (xb[:, :1], tb[:, :1]), "multilabel": (xb, tb)}
    cases = []
    for entry in available_losses():
        # the train-time calibration losses are plain PyTorch operations (no fused op): not in the budget
        fused = not entry.factory.__module__.endswith(".calibrating")
        if fused and "segmentation" in entry.tasks and entry.accepts("mode"):
            for mode in inputs:
                try:
                    cases.append((f"{entry.name}({mode})", get_loss(entry.name, mode=mode), *inputs[mode]))
                except ValueError:  # a mode the loss does not take
                    pass
    cases += [("dice(multiclass, batch)", DiceLoss(batch=True), x, t),
              ("focal(label_smoothing=0.1)", FocalLoss(label_smoothing=0.1), x, t),
              ("ce(label_smoothing=0.1)", CrossEntropyLoss(label_smoothing=0.1), x, t)]
    most = 0
    for name, loss, xi, ti in cases:
        xs = xi.clone().requires_grad_(True)
        with medloss.implementation("triton"):
            LAUNCHES["n"] = 0
            loss(xs, ti).sum().backward()
            launches = LAUNCHES["n"]
        with medloss.implementation("pytorch"):
            xr = xi.clone().requires_grad_(True)
            loss(xr, ti).sum().backward()
        torch.testing.assert_close(xs.grad, xr.grad, rtol=1e-4, atol=1e-6)
        assert 2 <= launches <= 4, (name, launches)
        most = max(most, launches)
        print(f"launches: {name} forward + backward = {launches}")
    print(f"launch budget: {len(cases)} losses x modes, at most {most} launches each")
    # the ordinal op: CumulativeLinkLoss with learned cutpoints, one launch each way
    f = torch.randn(50, 1, generator=torch.Generator().manual_seed(9))
    grades = torch.randint(0, 5, (50,), generator=torch.Generator().manual_seed(10))
    grads = {}
    for name in ("triton", "pytorch"):
        loss = CumulativeLinkLoss(num_classes=5)
        fs = f.clone().requires_grad_(True)
        with medloss.implementation(name):
            LAUNCHES["n"] = 0
            loss(fs, grades).backward()
            launches = LAUNCHES["n"]
        grads[name] = (fs.grad, *(p.grad for p in loss.parameters()))
        if name == "triton":
            assert launches == 2, launches
            print(f"launches: cumulative_link forward + backward = {launches}")
    for a, b in zip(grads["triton"], grads["pytorch"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
