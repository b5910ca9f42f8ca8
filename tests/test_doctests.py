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


def _public_objects():
    import inspect

    import medloss.calibration
    import medloss.losses
    import medloss.metrics

    for module in (medloss, medloss.losses, medloss.metrics, medloss.calibration):
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj) or callable(obj):
                yield pytest.param(obj, id=f"{module.__name__}.{name}")


@pytest.mark.parametrize("obj", list(_public_objects()))
def test_every_public_object_has_an_example(obj):
    # every public docstring carries an Example, which test_module_examples_run executes
    import inspect

    assert ">>>" in (inspect.getdoc(obj) or ""), f"{obj!r} has no Example in its docstring"


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
