"""The documentation: the site builds with warnings as errors, and its examples run.

- every ``.. code-block:: python`` of ``docs/`` runs, each block alone (fresh
  globals, imports included), one subprocess per page;
- the Sphinx build (``-W --keep-going``, the gallery executed) succeeds and the key
  pages exist (slow: about half a minute);
- the error messages of the chunk-wise options teach every accepted form.
"""

from __future__ import annotations

import importlib.util
import re
import textwrap
from html import unescape
from pathlib import Path

import numpy as np
import pytest

from lazyapply import SpecError, lazy_apply
from tests._blocks import top_level_imports
from tests._python import ROOT, run_python

DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.rst") if "_build" not in p.parts)
_BLOCK = re.compile(
    r"^( *)\.\. code-block:: python\n((?:\1 +:.*\n)*)\n((?:\1   .*\n|\n)+)", re.M
)


def python_blocks(text: str) -> list[str]:
    """The source of every ``.. code-block:: python`` of an rst page."""
    return [textwrap.dedent(m[3]) for m in _BLOCK.finditer(text)]


# Runs each block in fresh globals, as a separate script would; stops at the first
# failure and names it.
_RUNNER = """
import sys
for i, source in enumerate(BLOCKS):
    try:
        exec(compile(source, f"block {i + 1}", "exec"), {"__name__": "__main__"})
    except BaseException:
        print(f"code block {i + 1} of {PAGE} failed:", file=sys.stderr)
        raise
"""


PAGES_WITH_CODE = [p for p in PAGES if python_blocks(p.read_text(encoding="utf-8"))]


@pytest.mark.slow
@pytest.mark.parametrize(
    "page", PAGES_WITH_CODE, ids=[str(p.relative_to(DOCS)) for p in PAGES_WITH_CODE]
)
def test_code_blocks_run(page: Path, tmp_path: Path) -> None:
    blocks = python_blocks(page.read_text(encoding="utf-8"))
    missing = sorted(
        {
            n
            for b in blocks
            for n in top_level_imports(b)
            if importlib.util.find_spec(n) is None
        }
    )
    if missing:
        pytest.skip(f"{page.name} needs {', '.join(missing)} (not installed)")
    script = f"BLOCKS = {blocks!r}\nPAGE = {page.name!r}\n{_RUNNER}"
    proc = run_python("-c", script, env={"JAX_PLATFORMS": "cpu"}, cwd=tmp_path)
    assert proc.stdout.strip(), f"the code blocks of {page.name} print nothing"


def test_every_page_with_code_is_found() -> None:
    names = {p.relative_to(DOCS).as_posix() for p in PAGES_WITH_CODE}
    assert {"index.rst", "user_guide/chunkwise.rst", "troubleshooting.rst"} <= names
    assert sum(len(python_blocks(p.read_text())) for p in PAGES_WITH_CODE) >= 20


@pytest.mark.slow
def test_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    for tool in ("sphinx", "pydata_sphinx_theme", "numpydoc", "sphinx_gallery"):
        if importlib.util.find_spec(tool) is None:
            pytest.skip(f"{tool} is not installed (pip install '.[docs]')")
    out = tmp_path / "html"
    run_python(
        *("-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"),
        *("-d", str(tmp_path / "doctrees"), str(DOCS), str(out)),
        env={"MPLBACKEND": "agg"},
        cwd=ROOT,
        timeout=600,
    )
    pages = {
        "index.html": "Run the fast eager kernels",
        "getting_started.html": "Your first kernel",
        "user_guide/chunkwise.html": "Three chunks, depth=2",
        "user_guide/jax.html": "The native path: Numba under jax.jit",
        "user_guide/gradients.html": "Forward mode",
        "user_guide/pytorch.html": "torch.compile, torch.export and torch.func",
        "user_guide/checking.html": "From the command line",
        "generated/lazyapply.explain_native.html": "callback: <reason>",
        "backends.html": "How each backend runs a kernel",
        "migrating.html": "Unknown sizes broadcast",
        "troubleshooting.html": "Reading an error under",
        "cli.html": "MODULE:FUNCTION",
        "generated/lazyapply.lazy_apply.html": "a dict {axis: depth}",
        "auto_examples/index.html": "How a stencil",
        "auto_examples/plot_stencil_halo.html": "equal to the eager result",
        "auto_examples/plot_gradients.html": "vmap(grad) agrees with finite",
    }
    for page, text in pages.items():
        html = (out / page).read_text(encoding="utf-8")
        assert text in unescape(re.sub(r"<[^>]+>", "", html)), page
    chunkwise = (out / "user_guide/chunkwise.html").read_text(encoding="utf-8")
    assert 'src="../_images/sphx_glr_plot_stencil_halo_001.png"' in chunkwise
    api = (out / "generated/lazyapply.lazy_apply.html").read_text(encoding="utf-8")
    assert "extra leading (loop) dimensions" in unescape(re.sub(r"<[^>]+>", "", api))
    assert (
        out / "_images" / "sphx_glr_plot_stencil_halo_001.png"
    ).stat().st_size > 1000


@pytest.mark.parametrize(
    ("options", "forms"),
    [
        ({"depth": 1.5}, ["an int >= 0", "(1, 0)", "{axis: depth}"]),
        ({"depth": "1"}, ["an int >= 0", "(1, 0)", "{axis: depth}"]),
        ({"depth": -1}, ["depth must be >= 0", "{axis: depth}"]),
        (
            {"depth": 1, "boundary": "wrap"},
            ["None", "'reflect'", "'periodic'", "'nearest'", "constant", "{axis: bo"],
        ),
        ({"depth": 1, "boundary": [0]}, ["'reflect'", "{axis: boundary}"]),
        ({"signature": 3}, ["gufunc", "'(n),(n)->()'", "'(m,n),(n,p)->(m,p)'"]),
        ({"signature": "n->()"}, ["'(n)->(),()'", "'(3)->()'"]),
    ],
    ids=lambda v: str(v)[:30],
)
def test_mode_errors_teach_every_form(options: dict, forms: list[str]) -> None:
    # A plain kernel: a NumPy ufunc has its own signature= parameter, which would
    # receive the keyword (a kernel's own parameters win over lazy_apply's options).
    def negative(x: np.ndarray) -> np.ndarray:
        return -x

    with pytest.raises(SpecError) as info:
        lazy_apply(negative, np.ones((2, 3)), **options)
    message = str(info.value)
    assert message.startswith("negative")
    for form in forms:
        assert form in message


def test_depth_axis_errors_say_the_valid_range() -> None:
    import dask.array as da

    x = da.ones((4, 4), chunks=2)
    with pytest.raises(SpecError, match=r"use an axis in \[-2, 1\]"):
        lazy_apply(np.negative, x, depth={5: 1})
