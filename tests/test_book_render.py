"""The rendered book opens in a real browser: every image loads, every heading and table is there.

A two-notebook fake book (a figure, a table, a figure and a table saved but not shown, a log on
stderr) is executed by the real runner on the tiny profile in temporary directories, rendered, and
opened in headless Chromium. Chromium comes from Debian's package (``make test`` installs it when
missing); without it these tests fail, unless ``MLSEARCH_NO_BROWSER=1`` asks to skip them.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mlsearch_lib.book import render, runner

# Writes what the browser saw into the DOM once the page (and every image) has loaded.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images].map(im => ({
    ok: im.complete && im.naturalWidth > 0, width: im.naturalWidth, src: im.getAttribute("src").slice(0, 60)}));
  const broken_links = [...document.querySelectorAll('a[href^="#"]')]
    .map(a => a.getAttribute("href").slice(1)).filter(id => !document.getElementById(id));
  const headings = [...document.querySelectorAll("h1, h2, h3, h4")].map(h => [h.tagName, h.id, h.textContent.trim()]);
  // cell by cell: innerText is empty for what a closed <details> hides
  const tables = [...document.querySelectorAll("table")].map(t =>
    [...t.rows].map(r => [...r.cells].map(c => c.textContent.trim()).join("\\t")).join("\\n"));
  const out = document.createElement("pre");
  out.id = "mlsearch-probe";
  out.textContent = JSON.stringify({images, broken_links, headings, tables, text: document.body.innerText});
  document.body.appendChild(out);
});
</script>"""

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--mute-audio", "--virtual-time-budget=5000",
]


def chromium() -> str:
    if os.environ.get("MLSEARCH_NO_BROWSER") == "1":
        pytest.skip("MLSEARCH_NO_BROWSER=1: the browser check of the rendered book is skipped on request")
    for cand in (os.environ.get("MLSEARCH_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                 "/usr/bin/chromium"):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    pytest.fail("Chromium not found, so the rendered book cannot be checked in a browser. `make test` installs it "
                "(apt-get install -y --no-install-recommends chromium); or set MLSEARCH_CHROMIUM=/path/to/chromium, "
                "or MLSEARCH_NO_BROWSER=1 to skip this check.", pytrace=False)


def browser_probe(page: Path, work: Path) -> dict:
    """Open a copy of ``page`` (with :data:`PROBE` added) in headless Chromium; what it saw."""
    work.mkdir(parents=True, exist_ok=True)
    probed = work / f"probe_{page.name}"
    text = page.read_text(encoding="utf-8")
    probed.write_text(text.replace("</body>", PROBE + "</body>") if "</body>" in text else text + PROBE,
                      encoding="utf-8")
    cmd = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={work / 'chromium-profile'}", "--dump-dom",
           probed.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="mlsearch-probe">(.*?)</pre>', done.stdout, flags=re.S)
    assert found, f"Chromium returned no probe result (rc {done.returncode}):\n{done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def _notebook(cells: list) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _params() -> nbformat.NotebookNode:
    return new_code_cell('PROFILE = "tiny"\nRUN_DIR = ""', metadata={"tags": ["parameters"]})


def _setup(stem: str) -> str:
    return ("import matplotlib.pyplot as plt\nimport pandas as pd\nfrom mlsearch_lib.book import outputs\n\n"
            f"cfg = outputs.setup({stem!r}, PROFILE, run_dir=RUN_DIR)\nprint('profile', cfg.name)")


FAKE_BOOK = {
    "00_alpha": _notebook([
        new_markdown_cell("# 00 — Alpha\n\nThe *first* notebook of a fake book.\n\n## A line"),
        _params(),
        new_code_cell(_setup("00_alpha")),
        new_code_cell("fig, ax = plt.subplots(figsize=(3, 2))\nax.plot([0, 1], [0, 1])\n"
                      "outputs.save_figure('line', fig);"),
        new_markdown_cell("## A table\n\nScores per language."),
        new_code_cell("outputs.save_table('scores', pd.DataFrame({'language': ['en', 'fr'], 'f1': [0.5, 0.25]}))"),
        new_code_cell("import sys\nprint('a warning on stderr', file=sys.stderr)"),
    ]),
    "01_beta": _notebook([
        new_markdown_cell("# 01 — Beta\n\n## Saved, not shown"),
        _params(),
        new_code_cell(_setup("01_beta")),
        new_code_cell("fig, ax = plt.subplots(figsize=(2, 2))\nax.bar(['a', 'b'], [1, 2])\n"
                      "outputs.save_figure('hidden', fig)\nplt.close(fig)\n"
                      "table = pd.DataFrame({'arm': ['LT', 'HCT'], 'roc_auc': [0.75, 0.625]})\n"
                      "_ = outputs.save_table('hidden', table)"),
        new_code_cell("from IPython.display import Markdown\nMarkdown('- a **markdown** output')"),
    ]),
}


@contextlib.contextmanager
def _book_env(root: Path, data: Path):
    """Data, outputs, build products and notebooks of a fake book under ``root``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLSEARCH_DATA_DIR", str(data))
        mp.setenv("MLSEARCH_OUTPUT_ROOT", str(root / "out"))
        mp.setenv("MLSEARCH_BUILD_DIR", str(root / "build"))
        mp.setattr(runner, "NOTEBOOKS_DIR", root / "notebooks")
        yield


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, synthetic_data) -> Path:
    """The fake book, executed by :func:`runner.run` on the tiny profile and rendered."""
    root = tmp_path_factory.mktemp("book_render")
    nb_dir = root / "notebooks"
    nb_dir.mkdir()
    for stem, nb in FAKE_BOOK.items():
        nbformat.write(nb, nb_dir / f"{stem}.ipynb")
    with _book_env(root, synthetic_data):
        runner.run("tiny", log=lambda *_: None, draft=True)
        path = render.render("tiny")
        assert path == render.book_path("tiny")
    return path


def test_book_path_default_profile_and_others(monkeypatch, tmp_path):
    monkeypatch.setenv("MLSEARCH_OUTPUT_ROOT", str(tmp_path))
    assert render.book_path(render.DEFAULT_PROFILE) == tmp_path / "reports" / "book.html"
    assert render.book_path("tiny") == tmp_path / "reports" / "book" / "tiny" / "book.html"


def test_render_without_a_run_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("MLSEARCH_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("MLSEARCH_OUTPUT_ROOT", str(tmp_path / "out"))
    with pytest.raises(SystemExit, match="book run --profile tiny"):
        render.render("tiny")


def test_render_refuses_a_run_that_skipped_notebooks_unless_partial(rendered, synthetic_data):
    root = rendered.parents[4]  # <root>/out/reports/book/tiny/book.html
    executed = sorted((root / "build" / "tiny" / "notebooks").glob("*.ipynb"))
    assert len(executed) == len(FAKE_BOOK) >= 2
    hidden = executed[0].rename(executed[0].with_suffix(".hidden"))  # as if the run had --only the others
    with _book_env(root, synthetic_data):
        try:
            with pytest.raises(SystemExit, match=rf"not executed notebook\(s\) {executed[0].name[:2]}: .*--only"):
                render.render("tiny")
            partial = render.render("tiny", partial=True).read_text(encoding="utf-8")
            assert f'id="nb-{executed[0].stem}"' not in partial and f'id="nb-{executed[1].stem}"' in partial
        finally:
            hidden.rename(executed[0])
            render.render("tiny")  # the module's other tests read the whole book


def test_book_is_one_self_contained_file(rendered):
    assert rendered.name == "book.html" and rendered.parent.name == "tiny"
    text = rendered.read_text(encoding="utf-8")
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]*)"', text)
    assert len(srcs) == 3 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'<(link|script)\b[^>]*\b(href|src)=', text)  # nothing fetched from elsewhere
    # the per-notebook pages and their index are still written beside it
    pages = rendered.parent
    assert {"00_alpha.html", "01_beta.html", "index.html"} <= {p.name for p in pages.iterdir()}
    assert "book.html" in (pages / "index.html").read_text(encoding="utf-8")


def test_book_opens_in_chromium_with_every_image_and_section(rendered, tmp_path):
    seen = browser_probe(rendered, tmp_path)
    assert len(seen["images"]) == 3 and all(im["ok"] for im in seen["images"]), seen["images"]
    assert not seen["broken_links"], seen["broken_links"]
    headings = [(tag, text.rstrip("¶")) for tag, _, text in seen["headings"]]
    assert headings[0] == ("H1", "mlsearch research book — profile tiny")
    for expected in [("H2", "Contents"), ("H2", "00 — Alpha"), ("H3", "A line"), ("H3", "A table"),
                     ("H2", "01 — Beta"), ("H3", "Saved, not shown"),
                     ("H4", "figures/00_line.png"), ("H4", "reports/tables/00_scores.csv"),
                     ("H4", "figures/01_hidden.png"), ("H4", "reports/tables/01_hidden.csv")]:
        assert expected in headings, expected
    order = [text for _, text in headings]
    assert order.index("00 — Alpha") < order.index("A table") < order.index("01 — Beta")
    # header: code version, data fingerprint, per-notebook durations, the profile's YAML
    meta = json.loads((rendered.parents[4] / "build" / "tiny" / "run.json").read_text())
    tables = seen["tables"]
    assert any(meta["code_version"] in t for t in tables)
    assert any(meta["data_fingerprint"]["QC/train_QC.txt"] in t for t in tables)
    durations = next(t for t in tables if "00_alpha" in t and "01_beta" in t)
    for stem in ("00_alpha", "01_beta"):
        info = meta["notebooks"][stem]
        assert f"{stem}\tok\t{info['code_version']}\t{info['seconds']}" in durations
    assert "name: tiny" in html.unescape(rendered.read_text(encoding="utf-8").split("id=\"profile-yaml\"", 1)[1])
    # tables as HTML: the displayed one and the saved-only one
    assert sum("fr\t0.25" in t for t in tables) >= 1
    assert any("HCT" in t and "0.6250" in t for t in tables)  # from reports/tables/01_hidden.md
    # narrative, stdout, markdown output; stderr folded in a log
    for fragment in ("The first notebook of a fake book.", "profile tiny", "a markdown output", "Scores per language."):
        assert fragment in seen["text"], fragment


def test_probe_catches_a_broken_image_and_a_dead_link(tmp_path):
    good = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><html><body><h1 id='top'>t</h1>"
        f"<img src='data:image/png;base64,{good}'><img src='missing.png'>"
        "<img src='data:image/png;base64,AAAAbroken'><a href='#top'>ok</a><a href='#nowhere'>dead</a>"
        "</body></html>", encoding="utf-8")
    seen = browser_probe(page, tmp_path / "work")
    assert [im["ok"] for im in seen["images"]] == [True, False, False]
    assert seen["broken_links"] == ["nowhere"]
