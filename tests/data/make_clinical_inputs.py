"""Writes tests/data/clinical_calibration_inputs.csv: the inputs that R's rms::val.prob was run on
(tests/data/clinical_calibration.R) to produce the expected values in tests/test_clinical_calibration.py.

Probabilities are written with 17 significant digits, so R and Python read identical doubles.
Run: python tests/data/make_clinical_inputs.py
"""

from pathlib import Path

import numpy as np


def datasets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(20261129)
    out = {}
    # calibrated: y ~ Bernoulli(p)
    p = rng.uniform(0.02, 0.98, 300)
    out["calibrated"] = (p, rng.binomial(1, p))
    # over-confident: the truth is a flattened version of p (true slope 0.5)
    z = rng.normal(0.0, 2.5, 400)
    p = 1 / (1 + np.exp(-z))
    out["overconfident"] = (p, rng.binomial(1, 1 / (1 + np.exp(-(0.3 + 0.5 * z)))))
    # under-confident: the truth is sharper than p (true slope 2)
    z = rng.normal(0.0, 0.8, 400)
    p = 1 / (1 + np.exp(-z))
    out["underconfident"] = (p, rng.binomial(1, 1 / (1 + np.exp(-(-0.4 + 2.0 * z)))))
    # small n
    p = rng.uniform(0.05, 0.95, 25)
    out["small"] = (p, rng.binomial(1, p))
    # tied probabilities, several on the 0.002 grid of val.prob's C (ROC)
    p = rng.choice(np.array([0.1, 0.2, 0.25, 0.4, 0.5, 0.6, 0.75, 0.8, 0.9]), 250)
    out["ties"] = (p, rng.binomial(1, p))
    # rare events: prevalence ~2 %
    z = rng.normal(-4.2, 1.0, 1500)
    p = 1 / (1 + np.exp(-z))
    out["rare"] = (p, rng.binomial(1, 1 / (1 + np.exp(-(0.2 + 1.1 * z)))))
    # exact 0 and 1 probabilities (left out of the logistic fits, with a warning)
    p = rng.uniform(0.0, 1.0, 120)
    y = rng.binomial(1, p)
    p[:3] = 0.0
    p[3:6] = 1.0
    y[:3] = [0, 0, 1]
    y[3:6] = [1, 1, 0]
    out["zero_one"] = (p, y)
    return out


if __name__ == "__main__":
    path = Path(__file__).with_name("clinical_calibration_inputs.csv")
    with path.open("w") as fh:
        fh.write("dataset,p,y\n")
        for name, (p, y) in datasets().items():
            for pi, yi in zip(p, y, strict=True):
                fh.write(f"{name},{pi:.17g},{int(yi)}\n")
    print(path)
