"""medloss's fused computations as PyTorch custom operators (``torch.ops.medloss.*``).

Each op is registered with :mod:`torch.library`, so the dispatcher, autograd, ``torch.compile`` and
FakeTensor see it as one shape-known operation: a fake (meta) implementation, a PyTorch implementation
that runs on every device, a backward registered with ``register_autograd`` (itself an op) that
recomputes the softmax / sigmoid from the saved logits, and, for a second derivative
(``create_graph=True``), the gradient of the op's defining formula (:mod:`medloss.ops.reference`).

- :mod:`~medloss.ops.softmax_stats`, :mod:`~medloss.ops.softmax_focal`, :mod:`~medloss.ops.sigmoid_stats`,
  :mod:`~medloss.ops.sigmoid_focal`, :mod:`~medloss.ops.logit_link_nll`: one module per op;
- :mod:`~medloss.ops.reference`: the defining formula of each op and term, once;
- :mod:`~medloss.ops.cpu_kernel`: the compiled C kernel (CPU tensors, the softmax ops);
- ``triton_softmax_stats``, ``triton_sigmoid_stats``, ``triton_logit_link``: Triton kernels (CUDA / ROCm
  tensors), imported lazily;
- :mod:`~medloss.ops.switch`: which implementation runs (:func:`medloss.implementation`).

Nothing here reads a device tensor's value on the host: labels that are neither in ``[0, C)`` nor
``ignore_index`` count nowhere inside the ops, each op returns how many there were (``n_bad``), and the
losses turn a nonzero count into a clear error in eager mode.
"""

from . import logit_link_nll, sigmoid_focal, sigmoid_stats, softmax_focal, softmax_stats  # noqa: F401 (registers)
from .switch import IMPLEMENTATIONS, get_implementation, implementation, resolve, set_implementation

__all__ = ["IMPLEMENTATIONS", "get_implementation", "implementation", "resolve", "set_implementation"]
