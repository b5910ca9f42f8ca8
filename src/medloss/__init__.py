"""medloss: losses for imbalanced and ordinal medical labels, and calibration you can trust."""

from . import _ops  # noqa: F401  (registers torch.ops.medloss.*)
from ._native import native_kernels, native_kernels_available
from ._validation import value_checks

__version__ = "0.1.0"

__all__ = ["native_kernels", "native_kernels_available", "value_checks", "__version__"]
