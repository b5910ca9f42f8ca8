"""The medloss workflow: tabular training, calibration on validation, evaluation on test, reports."""
