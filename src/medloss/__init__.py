"""medloss: losses for imbalanced and ordinal medical labels, and calibration you can trust."""

from importlib import metadata as _metadata

from . import ops  # noqa: F401  (registers torch.ops.medloss.*)
from ._validation import value_checks
from .ops import get_implementation, implementation, set_implementation
from .ops.cpu_kernel import native_kernels, native_kernels_available

try:  # one source of truth: the installed distribution's metadata (pyproject.toml)
    __version__ = _metadata.version("medloss")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "get_implementation",
    "implementation",
    "native_kernels",
    "native_kernels_available",
    "set_implementation",
    "value_checks",
]
