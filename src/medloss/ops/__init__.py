"""medloss's fused computations: the implementation switch (:mod:`medloss.ops.switch`) and
the Triton kernels (imported lazily, only where an op runs with ``implementation("triton")``)."""

from .switch import IMPLEMENTATIONS, get_implementation, implementation, resolve, set_implementation

__all__ = ["IMPLEMENTATIONS", "get_implementation", "implementation", "resolve", "set_implementation"]
