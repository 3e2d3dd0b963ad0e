"""Sphinx configuration of the dream-rl docs site.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (warnings are errors in CI).
Pages are Markdown (MyST); the API reference is generated from the docstrings (autodoc + napoleon).
"""

from __future__ import annotations

import sys
from importlib.metadata import version as distribution_version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "dream-rl"
author = "dream-rl contributors"
copyright = "2026, dream-rl contributors"
release = distribution_version("dream-rl")  # the version is written once, in pyproject.toml
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "cli_help",
    "env_table",
]
try:  # a copy button on code blocks, when the extension is installed (the `docs` extra has it)
    import sphinx_copybutton  # noqa: F401
except ImportError:
    pass
else:
    extensions.append("sphinx_copybutton")
    copybutton_prompt_text = "$ "
    copybutton_only_copy_prompt_lines = False

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "_ext"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_inherit_docstrings = False  # torch's and SB3's own docstrings are not ours to render
napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_rtype = False

html_theme = "sphinx_rtd_theme"
html_title = f"dream-rl {release}"
html_theme_options = {"navigation_depth": 3, "collapse_navigation": False}
html_show_sourcelink = False
html_static_path = ["_static"]
html_css_files = ["custom.css"]


def _pydantic_signature(app, what, name, obj, options, signature, return_annotation):
    """Pydantic models: show ``(**fields)`` instead of every field's validator annotations."""
    try:
        from pydantic import BaseModel
    except ImportError:  # pragma: no cover - pydantic is a dependency of dream-rl
        return None
    if what == "class" and isinstance(obj, type) and issubclass(obj, BaseModel):
        return "(**fields)", None
    return None


def setup(app):
    app.connect("autodoc-process-signature", _pydantic_signature)
