"""medloss: losses for imbalanced and ordinal medical labels, and calibration you can trust."""

from ._native import native_kernels, native_kernels_available

__version__ = "0.1.0"

__all__ = ["native_kernels", "native_kernels_available", "__version__"]
