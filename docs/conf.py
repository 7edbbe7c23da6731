"""Sphinx configuration of the lazyapply documentation.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (the
``docs`` extra installs the tools). The gallery in ``docs/gallery/`` runs at build
time; each example takes a few seconds.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document this checkout, not an installed copy
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import lazyapply  # noqa: E402

project = "lazyapply"
author = "the lazyapply developers"
copyright = "2026, the lazyapply developers"
version = release = lazyapply.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
exclude_patterns = ["_build", "**/GALLERY_HEADER.rst"]
templates_path: list[str] = []

# numpydoc renders the NumPy-style docstrings; autosummary writes one page per name.
autosummary_generate = True
autodoc_typehints = "none"  # the signatures and numpydoc's Parameters say it
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# No intersphinx: CI machines build offline, and -W turns an unreachable inventory
# into an error.

sphinx_gallery_conf = {
    "examples_dirs": "gallery",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "show_signature": False,
}

html_theme = "pydata_sphinx_theme"
html_title = f"lazyapply {release}"
html_theme_options = {
    "navbar_align": "left",
    "header_links_before_dropdown": 8,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "getting_started": [], "backends": []}
html_static_path: list[str] = []
html_show_sourcelink = False

