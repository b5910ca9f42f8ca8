"""coral-pytorch's own expected values (``coral_pytorch/tests/test_losses.py``), replayed with
medloss's conventions (SPEC 12). coral-pytorch is not called here.

coral-pytorch takes the "levels" ``1[y > k]`` where medloss takes the integer grades: the levels
``[1, 1, 0, 0]``, ``[1, 0, 0, 0]``, ``[1, 1, 1, 1]`` of its test are the grades 2, 1, 4 of K = 5.
"""

import pytest
import torch

from medloss.losses import CORALLoss, CORNLoss, coral_loss

LOGITS = torch.tensor([[2.1, 1.8, -2.1, -1.8], [1.9, -1.0, -1.5, -1.3], [1.9, 1.8, 1.7, 1.6]])
GRADES = torch.tensor([2, 1, 4])


def test_coral_basic():  # test_losses.py::test_coral_basic (rtol 1e-3, atol 1e-5)
    none = CORALLoss(5, reduction="none")(LOGITS, GRADES)
    torch.testing.assert_close(none, torch.tensor([0.5370, 0.8951, 0.6441]), rtol=1e-3, atol=1e-5)
    assert CORALLoss(5, reduction="sum")(LOGITS, GRADES).item() == pytest.approx(2.0761, rel=1e-3, abs=1e-5)
    assert coral_loss(LOGITS, GRADES, num_classes=5).item() == pytest.approx(0.6920, rel=1e-3, abs=1e-5)


def test_coral_importance_weights_scale_each_task():
    # coral-pytorch multiplies task k's binary cross-entropy by importance_weights[k]: written out here
    w = torch.tensor([1.0, 0.5, 2.0, 0.0])
    levels = (GRADES.unsqueeze(1) > torch.arange(4)).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(LOGITS, levels, reduction="none")
    torch.testing.assert_close(CORALLoss(5, importance_weights=w, reduction="none")(LOGITS, GRADES), (bce * w).sum(1))


def test_corn_basic():  # test_losses.py::test_corn_basic: 0.9657 for labels [0, 1, 2], K = 5
    # coral-pytorch < 1.4 divided the summed task losses by num_classes (this test's value);
    # coral-pytorch >= 1.4 and medloss divide by the number of (sample, task) pairs used (6 here)
    total = CORNLoss(5, reduction="sum")(LOGITS, torch.tensor([0, 1, 2]))
    assert (total / 5).item() == pytest.approx(0.9657, rel=1e-3, abs=1e-5)
    assert CORNLoss(5)(LOGITS, torch.tensor([0, 1, 2])).item() == pytest.approx(total.item() / 6, rel=1e-6)


def test_coral_predict_and_probabilities():
    # proba_to_label: the number of P(y > k) > 0.5; the grade probabilities are differences of P(y > k)
    loss = CORALLoss(5)
    assert loss.predict(LOGITS).tolist() == [2, 1, 4]
    p = loss.class_probabilities(LOGITS)
    s = torch.sigmoid(LOGITS)
    torch.testing.assert_close(p[:, 0], 1 - s[:, 0])
    torch.testing.assert_close(p[:, 4], s[:, 3])
    torch.testing.assert_close(p.sum(1), torch.ones(3))


def test_coral_without_num_classes_as_coral_pytorch_writes_it():
    # coral-pytorch's coral_loss takes no K: it is the logits' width + 1 (here 4 + 1), same expected values
    none = CORALLoss(reduction="none")(LOGITS, GRADES)
    torch.testing.assert_close(none, torch.tensor([0.5370, 0.8951, 0.6441]), rtol=1e-3, atol=1e-5)
    assert coral_loss(LOGITS, GRADES).item() == pytest.approx(0.6920, rel=1e-3, abs=1e-5)
    assert CORALLoss().predict(LOGITS).tolist() == [2, 1, 4]
    w = torch.tensor([1.0, 0.5, 2.0, 0.0])  # K from the importance weights
    assert CORALLoss(importance_weights=w).num_classes == 5
    with pytest.raises(ValueError, match=r"in \[0, 4\]"):
        CORALLoss()(LOGITS, torch.tensor([2, 1, 5]))  # a grade above K - 1 = 4
