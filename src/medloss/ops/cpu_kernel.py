"""The CPU kernel: the optional fused C kernels (``medloss/_kernels.c``), reached through ctypes.

The extension is compiled when medloss is installed (``setup.py``; optional, so a machine without
a C compiler still installs medloss). When it is present, the CPU implementations of the softmax ops
(:mod:`medloss.ops.softmax_stats`, :mod:`medloss.ops.softmax_focal`) run their per-pixel work in it
(float32 / float64, 2-32 classes); everything else runs the ops' PyTorch implementation of the same
formulas. Both are tested against the reference (:mod:`medloss.ops.reference`).
``MEDLOSS_NATIVE=0`` in the environment, or ``medloss.implementation("pytorch")``, turns the kernels off.
"""

from __future__ import annotations

import ctypes
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .reference import TERM_FOCAL, TERM_NONE, TERM_WCE
from .switch import get_implementation, implementation

MAX_CLASSES = 32



class PassArgs(ctypes.Structure):
    """Mirror of ``medloss_pass_args`` in ``_kernels.c`` (field order and types must match)."""

    _fields_ = [
        ("B", ctypes.c_int64),
        ("C", ctypes.c_int64),
        ("S", ctypes.c_int64),
        ("x", ctypes.c_void_p),
        ("t", ctypes.c_void_p),
        ("valid", ctypes.c_void_p),
        ("ignore_index", ctypes.c_int64),
        ("use_ignore", ctypes.c_int32),
        ("pad_", ctypes.c_int32),
        ("labels8_out", ctypes.c_void_p),
        ("labels8", ctypes.c_void_p),
        ("n_bad", ctypes.c_void_p),
        ("term", ctypes.c_int32),
        ("n_threads", ctypes.c_int32),
        ("term_w", ctypes.c_void_p),
        ("gamma", ctypes.c_void_p),
        ("stats", ctypes.c_void_p),
        ("term_value", ctypes.c_void_p),
        ("grad", ctypes.c_void_p),
        ("u", ctypes.c_void_p),
        ("v", ctypes.c_void_p),
        ("g_term", ctypes.c_double),
        ("gomp_parallel", ctypes.c_void_p),
    ]


def _openmp_parallel() -> int | None:
    """Address of ``GOMP_parallel`` in the OpenMP runtime PyTorch's CPU library uses, so that the
    kernels run on PyTorch's own worker threads; None if there is none (then: pthreads).

    The symbol is looked up through ``libtorch_cpu`` (dlsym on a library searches its own
    dependencies first): other packages load OpenMP runtimes of their own (scikit-learn ships
    one), and a second pool's threads would compete with PyTorch's for the cores.
    """
    lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
    try:
        names = sorted(n for n in os.listdir(lib_dir) if n.startswith("libtorch_cpu.") or n == "libtorch_cpu.so")
    except OSError:
        return None
    for name in names:
        try:
            runtime = ctypes.CDLL(os.path.join(lib_dir, name))
            return ctypes.cast(runtime.GOMP_parallel, ctypes.c_void_p).value
        except (OSError, AttributeError):
            continue
    return None


#: version of the argument struct and of the kernels' contract (bumped with any change to either)
ABI_VERSION = 2


def layout_matches(lib: ctypes.CDLL) -> bool:
    """Whether the library's argument struct has exactly the fields of :class:`PassArgs`: the same
    total size, and each field at the same offset with the same size (a build where a field moved
    or changed type is refused even if the total size did not change)."""
    lib.medloss_kernels_abi.restype = ctypes.c_int64
    if lib.medloss_kernels_abi() != 1000 * ctypes.sizeof(PassArgs) + ABI_VERSION:
        return False
    fields = PassArgs._fields_
    out = (ctypes.c_int64 * (2 * len(fields)))()
    lib.medloss_kernels_layout.restype = ctypes.c_int64
    lib.medloss_kernels_layout.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.c_int64]
    if lib.medloss_kernels_layout(out, len(fields)) != len(fields):
        return False
    expected = []
    for name, ctype in fields:
        expected += [getattr(PassArgs, name).offset, ctypes.sizeof(ctype)]
    return list(out) == expected


def _load() -> ctypes.CDLL | None:
    try:
        from .. import _kernels  # type: ignore[attr-defined]
    except ImportError:
        return None
    try:
        lib = ctypes.CDLL(_kernels.__file__)
        if not layout_matches(lib):
            return None  # a stale build from another version: use the PyTorch path
        for name in ("medloss_softmax_pass_f32", "medloss_softmax_pass_f64"):
            fn = getattr(lib, name)
            fn.argtypes = [ctypes.POINTER(PassArgs)]
            fn.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return lib


_LIB = _load()
_GOMP_PARALLEL = _openmp_parallel() if _LIB is not None else None
_ENV_ENABLED = os.environ.get("MEDLOSS_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def env_enabled() -> bool:
    """False when ``MEDLOSS_NATIVE=0`` turned the compiled kernels off for the process."""
    return _ENV_ENABLED


def _selected() -> bool:
    """The implementation switch lets the compiled kernels run (``"auto"`` or ``"cpu_kernel"``)."""
    return _ENV_ENABLED and get_implementation() in ("auto", "cpu_kernel")


def native_kernels_available() -> bool:
    """True when the compiled kernels are installed and the implementation switch lets them run
    (:func:`medloss.implementation`).

    Returns:
        Whether a loss on CPU tensors runs the compiled kernels now.

    Examples:
        >>> import medloss
        >>> isinstance(medloss.native_kernels_available(), bool)  # False without a C compiler at install time
        True
    """
    return _LIB is not None and _selected()


@contextmanager
def native_kernels(enabled: bool) -> Iterator[None]:
    """Deprecated: ``medloss.implementation("auto")`` (enabled) or ``medloss.implementation("pytorch")``
    (disabled) says the same for every implementation; this alias stays for one release.

    Args:
        enabled: ``True`` for ``implementation("auto")``, ``False`` for ``implementation("pytorch")``.

    Returns:
        A context manager (and a FutureWarning naming :func:`medloss.implementation`).

    Raises:
        Nothing beyond :func:`medloss.implementation`'s.

    Examples:
        >>> import warnings, medloss
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     with medloss.native_kernels(False):
        ...         medloss.get_implementation()
        'pytorch'
        >>> caught[0].category.__name__
        'FutureWarning'
    """
    warnings.warn("medloss.native_kernels(enabled) is deprecated: use medloss.implementation('auto') or "
                  "medloss.implementation('pytorch')", FutureWarning, stacklevel=3)
    with implementation("auto" if enabled else "pytorch"):
        yield


_KERNEL_DTYPES = (torch.float32, torch.float64)


def usable(x: torch.Tensor, enabled: bool | None = None) -> bool:
    """Whether the kernels handle these ``[B, C, *]`` logits (the ops' CPU implementations ask);
    ``enabled``: the on / off choice to apply instead of the current one (a backward applies its
    forward's)."""
    return (
        _LIB is not None
        and (_selected() if enabled is None else enabled)
        and x.device.type == "cpu"
        and x.dtype in _KERNEL_DTYPES
        and x.ndim >= 2
        and 2 <= x.shape[1] <= MAX_CLASSES
        and x.numel() > 0
    )


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class PassResult:
    """What one kernel pass returns (fields left None when not asked for)."""

    __slots__ = ("stats", "term", "grad", "labels8", "n_bad")

    def __init__(self, stats, term, grad, labels8, n_bad):
        self.stats, self.term, self.grad, self.labels8, self.n_bad = stats, term, grad, labels8, n_bad


def _check_pass_arguments(x, t, valid, labels8, term, term_w, gamma, grad, u, v) -> None:
    """Everything the C side trusts, checked before a pointer crosses the boundary: devices,
    dtypes, contiguity and shapes of every buffer it reads or writes (ValueError otherwise)."""

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(f"medloss kernel: {what}")

    need(isinstance(x, torch.Tensor) and x.device.type == "cpu", "logits must be a CPU tensor")
    need(x.dtype in _KERNEL_DTYPES, f"logits must be float32 or float64, got {x.dtype}")
    need(x.dim() >= 2 and x.is_contiguous(), f"logits must be contiguous [B, C, *], got strides {x.stride()}")
    b, c = x.shape[:2]
    need(2 <= c <= MAX_CLASSES and x.numel() > 0, f"logits need 2-{MAX_CLASSES} classes and data, got {list(x.shape)}")
    s = x.numel() // (b * c)

    def pixels(tensor, name: str, dtypes) -> None:
        need(tensor.device.type == "cpu" and tensor.dtype in dtypes, f"{name} must be a CPU {dtypes} tensor")
        need(tensor.is_contiguous() and tensor.numel() == b * s, f"{name} must be contiguous with {b * s} entries")

    need((t is None) != (labels8 is None), "exactly one of the labels `t` / `labels8`")
    if t is not None:
        pixels(t, "t", (torch.int64,))
    if labels8 is not None:
        pixels(labels8, "labels8", (torch.uint8,))
    if valid is not None:
        pixels(valid, "valid", (torch.bool, torch.uint8))
    if term == TERM_FOCAL:
        need(term_w is not None and term_w.numel() == c and gamma is not None and gamma.numel() == c,
             "the focal term needs per-class weights and gammas")
    elif term == TERM_WCE:
        need(term_w is not None and term_w.numel() == 2, "the weighted cross-entropy needs [w_pos, w_neg]")
    else:
        need(term == TERM_NONE, f"unknown term {term}")
    for vec, name in ((u, "u"), (v, "v")):
        need(vec is None or (vec.device.type == "cpu" and vec.numel() == b * c), f"`{name}` must be [B, C] on CPU")
    need(not grad or (u is not None or v is not None or term != TERM_NONE), "a gradient pass needs u, v or a term")


def softmax_pass(
    x: torch.Tensor,
    t: torch.Tensor | None,
    valid: torch.Tensor | None = None,
    *,
    ignore_index: int | None = None,
    labels8: torch.Tensor | None = None,
    stats: bool = False,
    keep_labels: bool = False,
    term: int = TERM_NONE,
    term_w: torch.Tensor | None = None,
    gamma: torch.Tensor | None = None,
    grad: bool = False,
    u: torch.Tensor | None = None,
    v: torch.Tensor | None = None,
    g_term: float = 0.0,
) -> PassResult:
    """One pass of the kernel over contiguous logits ``x`` ``[B, C, *]``.

    Labels: ``t`` (``[B, *]`` int64 as given: pixels equal to ``ignore_index`` or False in
    ``valid`` count nowhere, other labels outside ``[0, C)`` are counted in ``n_bad``), or the
    compact ``labels8`` that a forward pass with ``keep_labels`` returned.
    Outputs: ``stats`` ``[B, 3, C]`` float64 (TP, sum p, sum y), the term's sum (forward passes
    only: 0 when ``grad``), the gradient (with ``u``, ``v`` ``[B, C]`` = dL/d sum_p and dL/d TP,
    and ``g_term`` = dL/d term).
    """
    assert _LIB is not None
    _check_pass_arguments(x, t, valid, labels8, term, term_w, gamma, grad, u, v)
    b, c = x.shape[:2]
    s = x[0, 0].numel()
    stats_out = torch.empty(b, 3, c, dtype=torch.float64) if stats else None
    grad_out = torch.empty_like(x, memory_format=torch.contiguous_format) if grad else None
    labels_out = torch.empty(b, s, dtype=torch.uint8) if keep_labels else None
    term_value = ctypes.c_double(0.0)
    n_bad = ctypes.c_int64(0)
    keep = [
        None if valid is None else valid.view(torch.uint8),
        None if term_w is None else term_w.to(torch.float64).contiguous(),
        None if gamma is None else gamma.to(torch.float64).contiguous(),
        None if u is None else u.to(torch.float64).contiguous(),
        None if v is None else v.to(torch.float64).contiguous(),
    ]
    args = PassArgs(
        B=b, C=c, S=s, x=x.data_ptr(), t=_ptr(t), valid=_ptr(keep[0]),
        ignore_index=0 if ignore_index is None else int(ignore_index), use_ignore=ignore_index is not None,
        labels8_out=_ptr(labels_out), labels8=_ptr(labels8), n_bad=ctypes.addressof(n_bad),
        term=term, n_threads=max(1, torch.get_num_threads()), term_w=_ptr(keep[1]), gamma=_ptr(keep[2]),
        stats=_ptr(stats_out), term_value=None if grad else ctypes.addressof(term_value), grad=_ptr(grad_out),
        u=_ptr(keep[3]), v=_ptr(keep[4]), g_term=float(g_term), gomp_parallel=_GOMP_PARALLEL,
    )
    fn = _LIB.medloss_softmax_pass_f32 if x.dtype == torch.float32 else _LIB.medloss_softmax_pass_f64
    status = fn(ctypes.byref(args))
    if status == 2:
        raise MemoryError(f"medloss kernel: out of memory for its scratch buffers (input {tuple(x.shape)})")
    if status != 0:  # pragma: no cover - _check_pass_arguments enforces the same limits first
        raise RuntimeError(f"medloss kernel failed (status {status}) for input {tuple(x.shape)}")
    return PassResult(stats_out, term_value.value, grad_out, labels_out, n_bad.value)
