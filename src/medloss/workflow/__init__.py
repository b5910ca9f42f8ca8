"""The medloss workflow: tabular training, calibration on validation, evaluation on test, reports.

Needs the ``cli`` extra (pandas, pyarrow, scikit-learn, matplotlib, tqdm): ``pip install 'medloss[cli]'``.
"""

from .._optional import require

for _module in ("pandas", "sklearn", "matplotlib", "tqdm"):
    require(_module, "the medloss workflow (train, predict, calibrate, demo and their reports)")
