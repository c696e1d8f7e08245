"""Sphinx configuration of the astroprob documentation (MyST Markdown pages, autodoc API).

Build with ``sphinx-build -W -b html docs docs/_build/html`` (warnings are errors).
"""

import re
from importlib.metadata import version as _installed_version
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]

project = "astroprob"
author = "the astroprob developers"
copyright = "2026, the astroprob developers"  # noqa: A001
release = _installed_version("astroprob")  # no import: jax loads only if autodoc needs it
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # Google-style docstrings
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # shapes and units are in the docstrings; annotations are noisy
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Docstrings use `name` for inline code (the Markdown habit), not a cross-reference.
default_role = "code"

html_theme = "alabaster"
html_title = f"astroprob {release}"
# Attributes: sections become fields of their class, not objects of their own (a dataclass
# field would otherwise be described twice, by napoleon and by autodoc).
napoleon_use_ivar = True

_REPO_LINK = re.compile(r"\[([^\]]+)\]\((\.\./[^)\s]+)\)")


def _repository_links(app, docname, source):
    """Links to files outside docs/ (scripts, results, README) become repository paths.

    Sphinx only builds what is inside docs/, so such a link has no target page;
    the text names the file instead. A link to a file that does not exist stays a
    link, and the build fails on it.
    """
    folder = Path(app.srcdir, docname).parent

    def replace(match):
        text, target = match.group(1), match.group(2)
        path = (folder / target.split("#")[0]).resolve()
        if not path.exists():
            return match.group(0)
        return f"{text} (`{path.relative_to(_ROOT)}` in the repository)"

    source[0] = _REPO_LINK.sub(replace, source[0])


_PLURAL = re.compile(r"(`[^`\s][^`]*`)s\b")


def _markdown_plurals(app, what, name, obj, options, lines):
    """Docstrings write a plural as a role followed by s; reStructuredText needs an escape."""
    lines[:] = [_PLURAL.sub(r"\1\\ s", line) for line in lines]


def setup(app):
    """Register the link rewriting and the docstring clean-up."""
    app.connect("source-read", _repository_links)
    app.connect("autodoc-process-docstring", _markdown_plurals)
