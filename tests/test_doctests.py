"""Every docstring Example in the package runs: doctest over each module of medloss."""

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

import medloss

# the Triton kernels import triton, an optional dependency (CUDA builds of PyTorch ship it)
_TRITON = importlib.util.find_spec("triton") is not None
MODULES = sorted(m.name for m in pkgutil.walk_packages(medloss.__path__, "medloss.")
                 if m.name != "medloss.__main__" and (_TRITON or not m.name.startswith("medloss.ops.triton_")))


@pytest.mark.parametrize("name", MODULES)
def test_module_examples_run(name):
    module = importlib.import_module(name)
    # no extra globals: every example imports what it uses beyond its module's own names
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


_PUBLIC_MODULES = ("medloss", "medloss.losses", "medloss.losses.functional", "medloss.metrics", "medloss.calibration",
                   "medloss.ops", "medloss.integrations.torchmetrics")


def _public_objects():
    import inspect

    seen = set()
    for module_name in _PUBLIC_MODULES:
        if module_name.endswith("torchmetrics") and importlib.util.find_spec("torchmetrics") is None:
            continue  # an optional extra: its classes are checked where it is installed
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if (inspect.isclass(obj) or callable(obj)) and id(obj) not in seen:
                seen.add(id(obj))
                yield pytest.param(obj, id=f"{module_name}.{name}")


def _takes_arguments(obj) -> bool:
    import inspect

    target = obj.__init__ if inspect.isclass(obj) else obj
    if target is object.__init__:
        return False
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return True
    return any(name not in ("self", "cls") for name in params)


@pytest.mark.parametrize("obj", list(_public_objects()))
def test_every_public_object_has_args_returns_raises_and_an_example(obj):
    """One docstring style (Google): Args (when it takes any), Returns, Raises (when it takes arguments) and a
    runnable Example (test_module_examples_run executes it); a dataclass lists its Attributes instead of
    Args / Returns."""
    import dataclasses
    import inspect

    doc = "\n" + (inspect.getdoc(obj) or "")
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
        sections = ["Attributes", "Examples"]
    else:
        sections = ["Returns", "Examples"] + (["Args", "Raises"] if _takes_arguments(obj) else [])
    missing = [s for s in sections if f"\n{s}:" not in doc]
    assert not missing, f"{obj!r} has no {', '.join(missing)} section"
    assert ">>>" in doc, f"{obj!r} has no runnable Example"


@pytest.mark.parametrize("name", MODULES)
def test_no_docstring_holds_a_control_character(name):
    """A ``"\\f"`` written in a non-raw docstring becomes a form feed (the API page then shows "rac{" for
    ``\\frac``): no docstring of the package holds a control character other than newlines."""
    import inspect

    module = importlib.import_module(name)
    objects = [module] + [obj for obj in vars(module).values() if getattr(obj, "__module__", None) == name]
    for obj in objects:
        for member in [obj, *(vars(obj).values() if inspect.isclass(obj) else ())]:
            doc = getattr(member, "__doc__", None)
            if isinstance(doc, str):
                assert not any(ord(ch) < 32 and ch not in "\n\t" for ch in doc), f"{name}: {member!r}"
