"""Every docstring Example in the package runs (issue 16): doctest over each module of medloss."""

import doctest
import importlib
import pkgutil

import pytest
import torch

import medloss

MODULES = sorted(m.name for m in pkgutil.walk_packages(medloss.__path__, "medloss.") if m.name != "medloss.__main__")


@pytest.mark.parametrize("name", MODULES)
def test_module_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             extraglobs={"torch": torch}, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
