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


def _special_table(app: object) -> None:
    """Write the table of SciPy special functions that run natively (issue 20).

    Generated from the code at every build (``special_coverage`` reads the loops
    from each ufunc), so the page cannot drift from what lazyapply does.
    """
    out = DOCS / "user_guide" / "_generated" / "special_table.rst"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        from lazyapply.adapters.jax.native._special import special_coverage

        rows = special_coverage()
    except ImportError as exc:  # SciPy not installed: say so on the page
        out.write_text(f"(The table needs SciPy: {exc}.)\n")
        return
    native = sum(1 for _, _, other in rows if not other)
    lines = [
        f"{len(rows)} ufuncs; every loop of {native} of them runs natively.",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 20 45 35",
        "",
        "   * - function",
        "     - native loops",
        "     - callback loops (why)",
    ]
    for name, loops, other in rows:
        lines += [
            f"   * - ``{name}``",
            f"     - {', '.join(f'``{lp}``' for lp in loops) or '—'}",
            f"     - {', '.join(f'``{lp}``' for lp in other) or '—'}",
        ]
    out.write_text("\n".join(lines) + "\n")


def setup(app: object) -> None:
    app.connect("builder-inited", _special_table)  # type: ignore[attr-defined]
