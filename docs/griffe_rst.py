"""A griffe extension for the API reference: the reStructuredText that medloss's docstrings use (also read by
``help()`` and IDEs) rendered as the site's Markdown.

- ``.. math:: formula`` becomes a display formula (``$$ ... $$``, typeset by MathJax through
  ``pymdownx.arithmatex``);
- ``:class:`~a.b.C```, ``:func:``, ``:meth:``, ``:attr:``, ``:data:``, ``:mod:``, ``:exc:`` and ``:obj:`` roles
  become inline code (``~`` keeps the last name only, as Sphinx shows it);
- double backticks (reST inline literals) become Markdown's single ones.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`(~?)([^`]+)`")
MATH = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<formula>.+)$", re.MULTILINE)


def _role(match: re.Match) -> str:
    name = match.group(2)
    return f"`{name.rsplit('.', 1)[-1] if match.group(1) else name}`"


def markdown(text: str) -> str:
    """The docstring ``text`` with its reST math, roles and literals as Markdown."""
    text = MATH.sub(lambda m: f"{m['indent']}$$\n{m['indent']}{m['formula'].strip()}\n{m['indent']}$$", text)
    text = ROLE.sub(_role, text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


class ReStructuredTextToMarkdown(griffe.Extension):
    """Rewrites every docstring once it is loaded (the site inspects the objects: ``force_inspection``)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:  # noqa: ARG002
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
