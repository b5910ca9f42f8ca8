"""Which implementation of medloss's fused ops runs: one switch for every op.

- ``"pytorch"``: plain PyTorch operations, on any device (what MPS runs, and CUDA without Triton);
- ``"cpu_kernel"``: the compiled C kernel (CPU tensors; built at install time when a C compiler is found);
- ``"triton"``: Triton kernels (CUDA / ROCm tensors; CPU tensors only under ``TRITON_INTERPRET=1``, Triton's
  interpreter, which is how they are tested without a GPU). Ops that have no Triton kernel yet run their
  PyTorch implementation on the same device;
- ``"auto"`` (default): Triton for CUDA tensors when Triton is importable, the C kernel for CPU tensors
  when it is built, PyTorch otherwise.

The choice reads only the switch and the tensor's device (never its values), so it is safe in a
compiled graph (dynamo guards on the switch). A backward runs the implementation its forward ran.
``MEDLOSS_IMPLEMENTATION`` sets the default for a process.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

IMPLEMENTATIONS = ("auto", "pytorch", "cpu_kernel", "triton")


def _checked(name: str) -> str:
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"`name` must be one of {', '.join(map(repr, IMPLEMENTATIONS))}; got {name!r}")
    return name


_current = _checked(os.environ.get("MEDLOSS_IMPLEMENTATION", "auto").strip().lower() or "auto")


def get_implementation() -> str:
    """The implementation in force (``"auto"`` unless set).

    Returns:
        ``"auto"``, ``"pytorch"``, ``"cpu_kernel"`` or ``"triton"``.

    Examples:
        >>> import medloss
        >>> medloss.get_implementation()
        'auto'
    """
    return _current


def set_implementation(name: str) -> None:
    """Choose the implementation of every fused op for this process (see :func:`implementation`).

    Args:
        name: ``"auto"`` (default: Triton on CUDA, the C kernel on CPU when built, else PyTorch), ``"pytorch"``,
            ``"cpu_kernel"`` or ``"triton"``.

    Returns:
        None.

    Raises:
        ValueError: ``name`` is not one of ``"auto"``, ``"pytorch"``, ``"cpu_kernel"``, ``"triton"``.

    Examples:
        >>> import medloss
        >>> medloss.set_implementation("pytorch")
        >>> medloss.get_implementation()
        'pytorch'
        >>> medloss.set_implementation("auto")
    """
    global _current
    _current = _checked(name)


@contextmanager
def implementation(name: str) -> Iterator[None]:
    """Run the fused ops inside the block with implementation ``name``: ``"auto"``, ``"pytorch"``,
    ``"cpu_kernel"`` or ``"triton"`` (module docstring). The backward of a loss computed inside the
    block runs the same implementation, even when ``backward()`` runs after it.

    Args:
        name: as :func:`set_implementation`.

    Returns:
        A context manager; the previous implementation is restored on leaving the block.

    Raises:
        ValueError: an unknown ``name``; when an op runs, a device the implementation cannot serve
            (``"cpu_kernel"`` on a CUDA tensor, ``"triton"`` on a CPU tensor without ``TRITON_INTERPRET=1``).
        RuntimeError: ``"cpu_kernel"`` without the compiled kernel, ``"triton"`` without Triton installed.

    Examples:
        >>> import medloss
        >>> from medloss.losses import DiceLoss
        >>> x, t = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
        >>> with medloss.implementation("pytorch"):  # what a GPU without Triton runs
        ...     reference = DiceLoss()(x, t)
        >>> torch.allclose(DiceLoss()(x, t), reference)
        True
    """
    global _current
    previous = _current
    _current = _checked(name)
    try:
        yield
    finally:
        _current = previous


def triton_importable() -> bool:
    """Whether ``import triton`` would succeed (checked without importing it)."""
    return importlib.util.find_spec("triton") is not None


def triton_interpreting() -> bool:
    """Whether Triton runs its interpreter (``TRITON_INTERPRET=1``): kernels then run on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "").strip() == "1"


def resolve(x: torch.Tensor) -> str:
    """The implementation an op runs for input ``x``: reads the switch and ``x.device`` only (no host sync).

    Args:
        x: the op's input tensor.

    Returns:
        ``"pytorch"``, ``"cpu_kernel"`` or ``"triton"``.

    Raises:
        ValueError: the implementation set cannot serve ``x``'s device (``"cpu_kernel"`` on a CUDA tensor,
            ``"triton"`` on a CPU tensor outside Triton's interpreter).
        RuntimeError: ``"cpu_kernel"`` without the compiled kernel, ``"triton"`` without Triton.

    Examples:
        >>> import medloss
        >>> from medloss.ops import resolve
        >>> with medloss.implementation("pytorch"):
        ...     resolve(torch.zeros(1))
        'pytorch'
    """
    name, device = _current, x.device.type
    if name == "auto":
        if device == "cuda" and triton_importable():
            return "triton"
        if device == "cpu" and _cpu_kernel_built():
            return "cpu_kernel"
        return "pytorch"
    if name == "cpu_kernel":
        if device != "cpu":
            raise ValueError(f"implementation 'cpu_kernel' runs on CPU tensors; got a {device} tensor: use 'auto'")
        if not _cpu_kernel_built():
            raise RuntimeError("implementation 'cpu_kernel': the compiled CPU kernel is not installed (no C compiler "
                               "at install time) or is disabled by MEDLOSS_NATIVE=0")
        return "cpu_kernel"
    if name == "triton":
        if not triton_importable():
            raise RuntimeError("implementation 'triton' needs Triton: pip install triton (CUDA builds of PyTorch "
                               "ship it)")
        if device == "cpu" and not triton_interpreting():
            raise ValueError("implementation 'triton' runs on CUDA / ROCm tensors; on CPU tensors only under "
                             "Triton's interpreter (TRITON_INTERPRET=1, for tests): use 'auto' or 'cpu_kernel'")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"implementation 'triton' runs on CUDA / ROCm tensors; got a {device} tensor")
        return "triton"
    return "pytorch"


def _cpu_kernel_built() -> bool:
    from . import cpu_kernel

    return cpu_kernel._LIB is not None and cpu_kernel.env_enabled()


__all__ = ["IMPLEMENTATIONS", "get_implementation", "implementation", "resolve", "set_implementation"]
