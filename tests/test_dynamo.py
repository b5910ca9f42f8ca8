"""Every registered loss under torch.compile (as kornia's test_dynamo does for its losses).

The registry is the list: a newly registered loss is compiled here without anyone adding it.
Each case: ``torch._dynamo.explain`` finds no graph break, and ``torch.compile(fullgraph=True)``
gives the eager value and gradient (1e-5), with the compiled kernel on and off. Most cases use
the ``aot_eager`` backend (dynamo + AOTAutograd with fake tensors: it exercises the ops' fake
implementations and registered backwards); a representative set also runs inductor.
"""

import pytest
import torch

import medloss
from medloss.losses import available_losses, get_loss


def _inputs(entry, mode, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    if entry.output == "score":
        return torch.randn(6, 1, generator=g, dtype=dtype), torch.tensor([0, 1, 2, 0, 1, -100])
    if entry.n_outputs(3) == 2:
        return torch.randn(6, 2, generator=g, dtype=dtype), torch.tensor([0, 1, 2, 0, 1, -100])
    if "ordinal" in entry.tasks:
        return torch.randn(6, 3, generator=g, dtype=dtype), torch.tensor([0, 1, 2, 0, 1, -100])
    if "detection" in entry.tasks:
        boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]], dtype=dtype)
        return boxes + 0.3 * torch.rand(2, 4, generator=g, dtype=dtype), boxes
    if mode == "binary":
        return torch.randn(2, 1, 5, 5, generator=g, dtype=dtype), torch.randint(0, 2, (2, 1, 5, 5), generator=g).to(dtype)
    if mode == "multilabel":
        return torch.randn(2, 3, 5, 5, generator=g, dtype=dtype), torch.randint(0, 2, (2, 3, 5, 5), generator=g).to(dtype)
    t = torch.randint(0, 3, (2, 5, 5), generator=g)
    t[0, 0, :2] = -100
    return torch.randn(2, 3, 5, 5, generator=g, dtype=dtype), t


def _build(entry, mode):
    if "ordinal" in entry.tasks:
        return get_loss(entry.name, num_classes=3)
    if mode is None:
        return get_loss(entry.name)
    return get_loss(entry.name, mode=mode)


def _cases():
    for entry in available_losses():
        if "ordinal" in entry.tasks or "detection" in entry.tasks or not entry.accepts("mode"):
            yield pytest.param(entry, None, id=entry.name)
            continue
        for mode in ("multiclass", "binary", "multilabel"):
            try:
                get_loss(entry.name, mode=mode)
            except ValueError:  # this loss has no such mode (the Unified family: no multilabel)
                continue
            yield pytest.param(entry, mode, id=f"{entry.name}-{mode}")


CASES = list(_cases())


def _value_and_grad(fn, x, t):
    x = x.clone().requires_grad_(True)
    value = fn(x, t)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


@pytest.mark.parametrize("native", [True, False], ids=["kernel", "pytorch"])
@pytest.mark.parametrize("entry,mode", CASES)
def test_no_graph_break(entry, mode, native):
    torch._dynamo.reset()
    loss = _build(entry, mode)
    x, t = _inputs(entry, mode)
    with medloss.implementation("auto" if native else "pytorch"):
        explanation = torch._dynamo.explain(loss)(x, t)
    assert explanation.graph_break_count == 0, [str(b.reason) for b in explanation.break_reasons]


def _assert_compiled_matches_eager(entry, mode, native, **compile_kwargs):
    torch._dynamo.reset()
    loss = _build(entry, mode)
    x, t = _inputs(entry, mode)
    with medloss.implementation("auto" if native else "pytorch"):
        expected = _value_and_grad(loss, x, t)
        compiled = torch.compile(loss, fullgraph=True, **compile_kwargs)
        got = _value_and_grad(compiled, x, t)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[1], expected[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("native", [True, False], ids=["kernel", "pytorch"])
@pytest.mark.parametrize("entry,mode", CASES)
def test_compiled_matches_eager(entry, mode, native):
    _assert_compiled_matches_eager(entry, mode, native, backend="aot_eager")


INDUCTOR = ["dice-multiclass", "focal-multiclass", "combo-multiclass", "asymmetric_unified_focal-multiclass",
            "dice-binary", "focal-binary", "cumulative_link", "soft_f1-multilabel"]


@pytest.mark.parametrize("native", [True, False], ids=["kernel", "pytorch"])
@pytest.mark.parametrize("entry,mode", [c for c in CASES if c.id in INDUCTOR])
def test_inductor_matches_eager(entry, mode, native):
    _assert_compiled_matches_eager(entry, mode, native)


def test_compiled_focal_equals_cross_entropy_at_gamma_0():
    """An independent reference under compilation: FocalLoss(gamma=0) is F.cross_entropy."""
    torch._dynamo.reset()  # earlier tests may have used up FocalLoss.forward's recompile budget
    x = torch.randn(4, 5, 6, 6)
    t = torch.randint(0, 5, (4, 6, 6))
    t[0, 0] = -100
    compiled = torch.compile(medloss.losses.FocalLoss(gamma=0.0), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x, t), torch.nn.functional.cross_entropy(x, t), rtol=1e-6, atol=1e-6)


def test_compiled_loss_skips_value_checks_and_counts_bad_labels_nowhere():
    """Under compilation the data checks are skipped (documented): a label out of range counts in
    no statistic, so Dice equals the Dice of the same batch with that pixel ignored."""
    x = torch.randn(1, 3, 4, 4)
    t = torch.randint(0, 3, (1, 4, 4))
    bad, ignored = t.clone(), t.clone()
    bad[0, 0, 0], ignored[0, 0, 0] = 7, -100
    compiled = torch.compile(medloss.losses.DiceLoss(), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x, bad), medloss.losses.DiceLoss()(x, ignored))
    with pytest.raises(ValueError, match=r"target.*\[0, 2\].*got values in \[0, 7\]"):
        medloss.losses.DiceLoss()(x, bad)  # eager mode keeps the clear error


def _twin_cases():
    import re

    from medloss.losses import functional

    def twin_name(cls):  # DiceLoss -> dice_loss, SymmetricFocalTverskyLoss -> symmetric_focal_tversky_loss
        special = {"CDWCELoss": "cdw_ce_loss", "CORALLoss": "coral_loss", "CORNLoss": "corn_loss",
                   "MCCLoss": "mcc_loss", "GIoULoss": "giou_loss", "SoftF1Loss": "soft_f1_loss"}
        return special.get(cls.__name__) or re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()

    twins = {}
    for entry in {c.values[0] for c in CASES}:
        if twin_name(entry.factory) in functional.__all__:
            twins[entry.factory] = getattr(functional, twin_name(entry.factory))
    for entry, mode in ((c.values[0], c.values[1]) for c in CASES):
        twin = twins.get(entry.factory)
        if twin is not None and mode in (None, "multiclass"):
            yield pytest.param(entry, mode, twin, id=twin.__name__)


@pytest.mark.parametrize("entry,mode,twin", list(_twin_cases()))
def test_functional_twins_compile_without_graph_break(entry, mode, twin):
    # the functional twin, compiled: one graph, the module's values
    torch._dynamo.reset()
    kwargs = {"num_classes": 3} if "ordinal" in entry.tasks else {}
    if mode is not None:
        kwargs["mode"] = mode
    x, t = _inputs(entry, mode)

    def fn(a, b):
        return twin(a, b, **kwargs)

    expected = _value_and_grad(fn, x, t)
    got = _value_and_grad(torch.compile(fn, fullgraph=True, backend="aot_eager"), x, t)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[1], expected[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(expected[0], _build(entry, mode)(x, t))


@pytest.mark.parametrize("entry,mode", CASES)
def test_meta_tensors_give_the_output_shape(entry, mode):
    """Meta tensors (shape inference, e.g. deferred initialisation) have no values: the value checks are
    skipped for them and every loss returns a meta result of the eager result's shape."""
    x, t = _inputs(entry, mode)
    loss = _build(entry, mode)
    expected = loss(x, t)
    out = loss(x.to("meta"), t.to("meta"))
    assert out.device.type == "meta" and out.shape == expected.shape and out.dtype == expected.dtype
