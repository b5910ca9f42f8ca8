"""Inputs that used to give a silent number: each case here returned a value before.

Every loss must raise a clear error for them, or (for the fixes that add support) return the
value computed independently.
"""

import numpy as np
import pytest
import torch

from medloss.losses import available_losses, get_loss

# every registered loss that takes binary input, built in binary mode
BINARY_LOSSES = [e.name for e in available_losses() if e.accepts("mode")]


def _binary(name):
    return get_loss(name, mode="binary")


@pytest.mark.parametrize("name", BINARY_LOSSES)
@pytest.mark.parametrize(
    "input_shape,target_shape",
    [
        ((2, 1, 4, 8), (2, 1, 8, 4)),  # a transposed mask with the same number of elements
        ((2, 4, 8), (2, 8, 4)),
        ((8,), (4, 2)),
        ((8, 1), (4, 2)),
        ((2, 1, 4, 4), (2, 4, 1, 4)),  # the channel dim moved, not added or removed
    ],
)
def test_binary_target_in_another_layout_is_a_shape_error(name, input_shape, target_shape):
    x = torch.randn(*input_shape)
    y = torch.randint(0, 2, target_shape).float()
    with pytest.raises(ValueError, match=r"target` shape \[.*\] does not match input \["):
        _binary(name)(x, y)


@pytest.mark.parametrize("name", BINARY_LOSSES)
@pytest.mark.parametrize("input_shape,target_shape", [((2, 1, 4, 8), (2, 4, 8)), ((2, 4, 8), (2, 1, 4, 8)), ((8,), (8, 1)), ((8, 1), (8,))])
def test_binary_channel_of_size_one_may_be_added_or_dropped(name, input_shape, target_shape):
    torch.manual_seed(0)
    x = torch.randn(*input_shape)
    y = torch.randint(0, 2, target_shape).float()
    loss = _binary(name)
    if name in ("svls", "nacl") and len(input_shape) < 3:  # a neighbourhood needs images: a clear error instead
        with pytest.raises(ValueError, match=r"needs images"):
            loss(x, y)
        return
    # the same loss as with the target in the input's own shape
    torch.testing.assert_close(loss(x, y), loss(x, y.reshape(input_shape)), rtol=0, atol=0)


def test_combined_loss_checks_the_target_layout():
    from medloss.losses import CombinedLoss

    mixed = CombinedLoss.from_spec("0.5*ce+0.5*soft_f1", mode="binary")
    with pytest.raises(ValueError, match=r"target` shape \[4, 2\] does not match input \[8\]"):
        mixed(torch.randn(8), torch.randint(0, 2, (4, 2)).float())


# --- ignore_index on the ordinal losses (they rejected it although the README says every loss honours it)

def _cdw_ce_reference(x, y, alpha):
    p = torch.softmax(x.double(), 1)
    k = torch.arange(x.shape[1], dtype=torch.float64)
    return -((k[None] - y[:, None].double()).abs() ** alpha * torch.log1p(-p)).sum(1)


def _emd_reference(x, y):
    cdf = torch.softmax(x.double(), 1).cumsum(1)
    k = torch.arange(x.shape[1])
    return ((cdf - (k[None] >= y[:, None]).double()) ** 2).sum(1)


def _corn_reference(x, y):
    """coral-pytorch's corn_loss, transcribed: BCE of task k over samples with y > k - 1, pooled."""
    total, count = 0.0, 0
    for k in range(x.shape[1]):
        used = y > k - 1
        labels = (y[used] > k).double()
        logits = x[used, k].double()
        total = total + torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
        count += int(used.sum())
    return total / count


IGNORED = torch.tensor([0, 2, -100, 1, 3, -100, 2])
COUNTED = IGNORED != -100


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cdw_ce_ignores_ignore_index(reduction):
    from medloss.losses import CDWCELoss

    x = torch.randn(7, 4, dtype=torch.float64)
    ref = _cdw_ce_reference(x[COUNTED], IGNORED[COUNTED], 2.0)
    got = CDWCELoss(num_classes=4, reduction=reduction)(x, IGNORED)
    if reduction == "none":
        expected = torch.zeros(7, dtype=torch.float64)
        expected[COUNTED] = ref
        torch.testing.assert_close(got, expected)
    else:
        torch.testing.assert_close(got, ref.mean() if reduction == "mean" else ref.sum())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_squared_emd_ignores_ignore_index(reduction):
    from medloss.losses import SquaredEMDLoss

    x = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    ref = _emd_reference(x.detach()[COUNTED], IGNORED[COUNTED])
    got = SquaredEMDLoss(num_classes=4, reduction=reduction)(x, IGNORED)
    if reduction == "none":
        assert got[~COUNTED].eq(0).all()
        torch.testing.assert_close(got[COUNTED], ref)
    else:
        torch.testing.assert_close(got, ref.mean() if reduction == "mean" else ref.sum())
        got.backward()
        assert x.grad[~COUNTED].eq(0).all()  # ignored samples get no gradient


def test_corn_ignores_ignore_index():
    from medloss.losses import CORNLoss

    x = torch.randn(7, 3, dtype=torch.float64)
    got = CORNLoss(num_classes=4)(x, IGNORED)
    torch.testing.assert_close(got, _corn_reference(x[COUNTED], IGNORED[COUNTED]))


@pytest.mark.parametrize("name", ["cdw_ce", "emd", "corn", "cumulative_link"])
def test_ordinal_loss_of_an_all_ignored_batch_is_zero(name):
    from medloss.losses.registry import _loss_entry

    entry = _loss_entry(name)
    width = entry.n_outputs(3)
    x = torch.randn(4, width, requires_grad=True)
    value = get_loss(name, num_classes=3)(x, torch.full((4,), -100))
    assert value.item() == 0.0
    value.backward()
    assert x.grad.eq(0).all()


# --- one policy for non-finite input: NaN or +-Inf in `input` is an error naming it, for every loss
# (FocalLoss raised, DiceLoss and the Unified family returned NaN)

def _example_inputs(entry):
    """(input, target) valid for the registered loss ``entry``, 3 grades / classes."""
    if entry.output == "score":
        return torch.randn(6, 1), torch.tensor([0, 1, 2, 0, 1, 2])
    if entry.n_outputs(3) == 2:
        return torch.randn(6, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    if "ordinal" in entry.tasks:
        return torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    if "detection" in entry.tasks:
        boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]])
        return boxes + 0.1, boxes
    return torch.randn(2, 3, 5, 5), torch.randint(0, 3, (2, 5, 5))


def _build(entry):
    if "ordinal" in entry.tasks:
        return get_loss(entry.name, num_classes=3)
    if "detection" in entry.tasks:
        return get_loss(entry.name)
    return get_loss(entry.name, mode="multiclass")


@pytest.mark.parametrize("entry", available_losses(), ids=lambda e: e.name)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_input_is_an_error_for_every_loss(entry, bad):
    x, t = _example_inputs(entry)
    x = x.clone()
    x.view(-1)[1] = bad
    with pytest.raises(ValueError, match=r"`input`.*non-finite"):
        _build(entry)(x, t)


@pytest.mark.parametrize("name", BINARY_LOSSES)
def test_non_finite_binary_input_is_an_error(name):
    x = torch.randn(2, 1, 4, 4)
    x[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"`input`.*non-finite.*1 NaN"):
        _binary(name)(x, torch.randint(0, 2, (2, 1, 4, 4)).float())


def test_huge_finite_logits_are_not_mistaken_for_non_finite():
    # their float32 sum overflows to inf; the check must look closer before it complains
    from medloss.losses import DiceLoss

    x = torch.full((1, 2, 4, 4), 3e38)
    x[0, 0] = -3e38
    assert torch.isfinite(DiceLoss()(x, torch.ones(1, 4, 4, dtype=torch.long)))


# --- calibrators: a fitted calibrator checks what it is given

def _val_logits(k=3, n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    z = torch.randn(n, k, generator=g) + 2.0 * torch.nn.functional.one_hot(y, k)
    return z, y


@pytest.mark.parametrize("kind", ["TemperatureScaler", "IsotonicCalibrator"])
def test_calibrator_fitted_on_3_classes_rejects_4_class_logits(kind, tmp_path):
    import medloss.calibration as cal

    z, y = _val_logits()
    fitted = getattr(cal, kind)().fit(z, y)
    fitted.save(tmp_path / "c.json")
    for calibrator in (fitted, cal.load_calibrator(tmp_path / "c.json")):
        with pytest.raises(ValueError, match=r"`logits` \[5, 4\] do not match the fitted .*\[N, 3\]"):
            calibrator.predict_proba(torch.randn(5, 4))
        with pytest.raises(ValueError, match=r"`logits` \[5\] do not match"):
            calibrator.predict_proba(torch.randn(5))


@pytest.mark.parametrize("kind", ["TemperatureScaler", "IsotonicCalibrator", "PlattScaler"])
def test_calibrator_fitted_on_one_class_is_an_error(kind):
    import medloss.calibration as cal

    z = torch.randn(100) * 3
    with pytest.raises(ValueError, match=r"`labels` hold a single class \(1\)"):
        getattr(cal, kind)().fit(z, torch.ones(100, dtype=torch.long))


def test_calibrator_fitted_without_a_class_warns():
    from medloss.calibration import TemperatureScaler

    z, y = _val_logits(k=4)
    keep = y != 3
    with pytest.warns(UserWarning, match=r"no example of class\(es\) \[3\]"):
        TemperatureScaler().fit(z[keep], y[keep])


@pytest.mark.parametrize("labels", [np.array(["benign", "malignant"] * 50), ["benign", "malignant"] * 50])
def test_calibrator_string_labels_name_the_argument(labels):
    from medloss.calibration import TemperatureScaler

    with pytest.raises(TypeError, match=r"`labels` must be"):
        TemperatureScaler().fit(torch.randn(100, 2), labels)


# --- second derivatives: a gradient penalty must see a gradient with a graph (FocalLoss returned one
# without, silently; Dice and the Unified family raised obscure autograd errors)

def _double_inputs(entry, mode):
    torch.manual_seed(1)
    if entry.output == "score":
        return torch.randn(6, 1, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, -100])
    if entry.n_outputs(3) == 2:
        return torch.randn(6, 2, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, -100])
    if "ordinal" in entry.tasks:
        return torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, -100])
    if "detection" in entry.tasks:
        boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]], dtype=torch.float64)
        return boxes + 0.3 * torch.rand(2, 4, dtype=torch.float64), boxes
    if mode == "binary":
        return torch.randn(2, 1, 3, 3, dtype=torch.float64), torch.randint(0, 2, (2, 1, 3, 3)).double()
    t = torch.randint(0, 3, (2, 3, 3))
    t[0, 0, 0] = -100
    return torch.randn(2, 3, 3, 3, dtype=torch.float64), t


def _double_cases():
    for entry in available_losses():
        modes = ["multiclass", "binary"] if entry.accepts("mode") and "ordinal" not in entry.tasks else [None]
        for mode in modes:
            yield pytest.param(entry, mode, id=f"{entry.name}-{mode or 'default'}")


@pytest.mark.parametrize("native", [True, False], ids=["kernel", "pytorch"])
@pytest.mark.parametrize("entry,mode", list(_double_cases()))
def test_second_derivatives_of_every_loss(entry, mode, native):
    from torch.autograd import gradgradcheck

    import medloss

    x, t = _double_inputs(entry, mode)
    if "ordinal" in entry.tasks:
        loss = get_loss(entry.name, num_classes=3)
    elif "detection" in entry.tasks:
        loss = get_loss(entry.name)
    else:
        loss = get_loss(entry.name, mode=mode)
    loss = loss.double()
    x.requires_grad_(True)
    with medloss.implementation("auto" if native else "pytorch"):
        (g,) = torch.autograd.grad(loss(x, t), x, create_graph=True)
        assert g.requires_grad  # the gradient penalty ||g||^2 has a gradient itself
        assert gradgradcheck(lambda z: loss(z, t), (x,))


def test_focal_gradient_penalty_matches_autograd_of_the_formula():
    """d/dx ||dFL/dx||^2 against autograd through a naive float64 transcription of the focal loss."""
    from medloss.losses import FocalLoss

    torch.manual_seed(0)
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 3, 1, 2, 2])

    def naive(z):
        p = torch.softmax(z, 1).gather(1, t[:, None])[:, 0]
        return (-(1 - p) ** 2 * torch.log(p)).mean()

    def penalty(fn):
        (g,) = torch.autograd.grad(fn(x), x, create_graph=True)
        (h,) = torch.autograd.grad((g ** 2).sum(), x)
        return h

    torch.testing.assert_close(penalty(lambda z: FocalLoss(gamma=2.0)(z, t)), penalty(naive))


def test_cumulative_link_second_derivatives_with_learned_cutpoints():
    from torch.autograd import gradgradcheck

    from medloss.losses import CumulativeLinkLoss

    loss = CumulativeLinkLoss(num_classes=4, learn_cutpoints=True).double()
    f = torch.randn(7, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 1, 2, 0])
    params = [p for p in loss.parameters()]
    assert gradgradcheck(lambda z, *ps: loss(z, y), (f, *params))
