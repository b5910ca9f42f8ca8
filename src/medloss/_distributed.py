"""Exact global losses under ``torch.distributed`` (issue 11): only the small statistics travel.

Every rank all-reduces its O(B * C) statistics with the autograd-aware
``torch.distributed.nn.functional.all_reduce`` and computes the same global loss. Its backward sums
the ranks' incoming gradients (all equal), so each rank's gradient is W times that of one process on
the concatenated batch; DDP's averaging over the W ranks then gives exactly the single-process
gradient (an anchor measured 3e-9 for a 2-rank prototype).
"""

from __future__ import annotations

import torch


def require_process_group(owner: str) -> None:
    """``distributed=True`` without an initialised process group is an error, not a silent local loss."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            f"{owner}(distributed=True) needs an initialised torch.distributed process group "
            "(torch.distributed.init_process_group, as DDP / torchrun / Lightning set up); none is initialised"
        )


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over all ranks, differentiable (the backward sums the incoming gradients)."""
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t)
