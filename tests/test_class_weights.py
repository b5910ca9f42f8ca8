import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from medloss.losses import class_weights


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_balanced_equals_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y = rng.choice(4, size=200, p=[0.6, 0.25, 0.1, 0.05])
    ref = compute_class_weight("balanced", classes=np.arange(4), y=y)
    np.testing.assert_allclose(class_weights(y, 4, "balanced", dtype=torch.float64).numpy(), ref, rtol=1e-12)
    # torch input and list input give the same
    np.testing.assert_allclose(class_weights(torch.from_numpy(y), 4).numpy(), ref, rtol=1e-6)
    np.testing.assert_allclose(class_weights(y.tolist(), 4).numpy(), ref, rtol=1e-6)


def test_inverse_and_effective_number_closed_forms():
    y = [0] * 50 + [1] * 30 + [2] * 5
    n = np.array([50.0, 30.0, 5.0])
    inv = class_weights(y, 3, "inverse", dtype=torch.float64).numpy()
    np.testing.assert_allclose(inv, (1 / n) / (1 / n).sum() * 3, rtol=1e-12)
    beta = 0.99
    eff = (1 - beta) / (1 - beta**n)
    got = class_weights(y, 3, "effective_number", beta=beta, dtype=torch.float64).numpy()
    np.testing.assert_allclose(got, eff / eff.sum() * 3, rtol=1e-12)
    # beta = 0: uniform; beta -> 1: inverse frequency
    np.testing.assert_allclose(class_weights(y, 3, "effective_number", beta=0.0).numpy(), [1, 1, 1], rtol=1e-6)
    near_one = class_weights(y, 3, "effective_number", beta=1 - 1e-9, dtype=torch.float64).numpy()
    np.testing.assert_allclose(near_one, inv, rtol=1e-6)


def test_absent_class_is_error_or_zero_and_never_inf():
    with pytest.raises(ValueError, match=r"class\(es\) \[2\]"):
        class_weights([0, 1, 1], 3)
    w = class_weights([0, 1, 1], 3, absent="zero", dtype=torch.float64).numpy()
    assert np.isfinite(w).all() and w[2] == 0
    np.testing.assert_allclose(w[:2], compute_class_weight("balanced", classes=np.array([0, 1]), y=[0, 1, 1]))


def test_ignore_index_skipped_and_bad_inputs():
    np.testing.assert_allclose(class_weights([0, 1, 1, -100], 2).numpy(), class_weights([0, 1, 1], 2).numpy())
    with pytest.raises(ValueError, match="num_classes"):
        class_weights([0, 1], 1)
    with pytest.raises(ValueError, match=r"targets.*\[0, 2\]"):
        class_weights([0, 3], 3)
    with pytest.raises(ValueError, match="scheme"):
        class_weights([0, 1], 2, "sqrt")
    with pytest.raises(ValueError, match="beta"):
        class_weights([0, 1], 2, "effective_number", beta=1.0)
    with pytest.raises(TypeError, match="integer"):
        class_weights([0.5, 1.0], 2)
    with pytest.raises(ValueError, match="empty"):
        class_weights([], 2)
