"""The documentation site renders the docstrings' reST: math as MathJax formulas, Sphinx roles as code."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _extension():
    pytest.importorskip("griffe", reason="the docs extra (mkdocstrings) is not installed")
    spec = importlib.util.spec_from_file_location("griffe_rst", ROOT / "docs" / "griffe_rst.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_math_roles_and_literals_become_markdown():
    md = _extension().markdown(
        "Focal loss\n\n    .. math:: \\mathrm{FL}(p_t) = -\\alpha_t (1 - p_t)^\\gamma \\log p_t\n\n"
        "See :class:`~medloss.calibration.TemperatureScaler` and :func:`medloss.losses.dice_loss`; ``gamma = 0``.")
    assert "    $$\n    \\mathrm{FL}(p_t) = -\\alpha_t (1 - p_t)^\\gamma \\log p_t\n    $$" in md
    assert "`TemperatureScaler`" in md and "`medloss.losses.dice_loss`" in md and "`gamma = 0`" in md
    assert ":class:" not in md and ".. math::" not in md and "``" not in md


def test_the_site_loads_the_extension_and_mathjax():
    config = (ROOT / "mkdocs.yml").read_text()
    assert "docs/griffe_rst.py:ReStructuredTextToMarkdown" in config and "pymdownx.arithmatex" in config
    assert "js/mathjax.js" in config and (ROOT / "docs" / "js" / "mathjax.js").exists()
    ext = _extension()
    assert issubclass(ext.ReStructuredTextToMarkdown, ext.griffe.Extension)
