"""The Sphinx documentation builds without a single warning (CI installs the docs extra)."""

import shutil
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _build(source, out):
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    return subprocess.run(
        [*cmd, str(source), str(out)], capture_output=True, text=True, timeout=600
    )


def test_docs_build_without_warnings(tmp_path):
    result = _build(DOCS, tmp_path / "html")
    assert result.returncode == 0, result.stderr[-3000:]
    pages = {p.relative_to(DOCS).with_suffix(".html") for p in DOCS.rglob("*.md")}
    built = {p.relative_to(tmp_path / "html") for p in (tmp_path / "html").rglob("*.html")}
    assert pages <= built, pages - built  # every page is reachable and built
    api = (tmp_path / "html" / "api.html").read_text()
    for name in ("astroprob.NPE", "astroprob.io.runs.train_run", "astroprob.io.catalogs"):
        assert name in api, name  # autodoc found the docstrings


def test_a_broken_reference_fails_the_build(tmp_path):
    # Negative control: the same configuration turns a dangling link into a failure.
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(DOCS / "conf.py", source / "conf.py")
    (source / "index.md").write_text("# Broken\n\nSee {doc}`no_such_page`.\n")
    result = _build(source, tmp_path / "html")
    assert result.returncode != 0
    assert "no_such_page" in result.stderr
