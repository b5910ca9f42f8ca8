"""Exact global losses under ``torch.distributed``: only the small statistics travel.

Every rank all-reduces its O(B * C) statistics with the autograd-aware
``torch.distributed.nn.functional.all_reduce`` and computes the same global loss. Its backward sums
the ranks' incoming gradients (all equal), so each rank's gradient is W times that of one process on
the concatenated batch; DDP's averaging over the W ranks then gives exactly the single-process
gradient (an anchor measured 3e-9 for a 2-rank prototype).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch


def require_process_group(owner: str) -> None:
    """``distributed=True`` without an initialised process group is an error, not a silent local loss."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            f"{owner}(distributed=True) needs an initialised torch.distributed process group "
            "(torch.distributed.init_process_group, as DDP / torchrun / Lightning set up); none is initialised"
        )


@functools.cache
def _functional_all_reduce_has_autograd() -> bool:
    """Whether ``_c10d_functional::all_reduce`` (traceable by dynamo) has its autograd formula
    registered (PyTorch >= 2.10 or so); older versions only have ``torch.distributed.nn``'s."""
    try:
        import torch.distributed._functional_collectives  # noqa: F401  (registers the formula)

        return torch._C._dispatch_has_kernel_for_dispatch_key("_c10d_functional::all_reduce", "Autograd")
    except (ImportError, RuntimeError, AttributeError):
        return False


def distributed_flag(module: Any) -> bool:
    """``module.distributed``, checked: True needs an initialised process group (the error names the
    module the user built)."""
    if module.distributed:
        require_process_group(type(module).__name__)
    return bool(module.distributed)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over all ranks, differentiable (the backward sums the incoming gradients).

    The functional collective where its autograd is registered: dynamo traces it, so a loss with
    ``distributed=True`` compiles without a graph break (``torch.distributed.nn``'s autograd
    function is deprecated and unsupported under ``torch.compile``); the latter otherwise."""
    # under compilation, always the traceable one (the check itself is not traceable)
    if torch.compiler.is_compiling() or _functional_all_reduce_has_autograd():
        import torch.distributed as dist
        from torch.distributed._functional_collectives import all_reduce, wait_tensor

        return wait_tensor(all_reduce(t.contiguous(), "sum", dist.group.WORLD))
    from torch.distributed.nn.functional import all_reduce as legacy_all_reduce

    return legacy_all_reduce(t)



def all_reduce_sums(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Each tensor summed over all ranks, in one differentiable all-reduce (one latency, not one per
    tensor); every tensor is cast to the first one's dtype."""
    dtype = tensors[0].dtype
    flat = torch.cat([t.reshape(-1).to(dtype) for t in tensors])
    total = all_reduce_sum(flat)
    return [part.view(t.shape) for part, t in zip(total.split([t.numel() for t in tensors]), tensors, strict=True)]


def all_reduce_numbers(*arrays: Any) -> list[np.ndarray]:
    """Sums over all ranks of small host arrays (bin counts, sums): one all-reduce in float64 on the
    backend's device (CUDA for NCCL), no autograd. Counts stay exact up to 2^53."""
    import torch.distributed as dist

    flat = [np.asarray(a, dtype=np.float64) for a in arrays]
    sizes = [a.size for a in flat]
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    buffer = torch.from_numpy(np.concatenate([a.ravel() for a in flat])).to(device)
    dist.all_reduce(buffer)
    parts = np.split(buffer.cpu().numpy(), np.cumsum(sizes)[:-1])
    return [p.reshape(a.shape) for p, a in zip(parts, flat, strict=True)]
