"""medloss: losses for imbalanced and ordinal medical labels, and calibration you can trust."""

__version__ = "0.1.0"
