"""Render an executed book: one self-contained HTML file a reader opens (``python -m
mlsearch_lib.book render``), ``reports/book.html`` for the published ``cpu`` profile and
``reports/book/<profile>/book.html`` for the others (:func:`book_path`).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import os
import re
from pathlib import Path
from typing import Any

from mlsearch_lib.book.publish import DEFAULT_PROFILE, read_json
from mlsearch_lib.book.runner import notebooks
from mlsearch_lib.config.paths import PROJECT_ROOT, build_dir, ensure, reports_dir
from mlsearch_lib.config.profiles import load_profile

_HEADING = re.compile(r"<h([1-6])([^>]*)>(.*?)</h\1>", re.S | re.I)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_SKIP_TAGS = {"parameters", "injected-parameters", "remove-cell", "remove_cell"}
_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;max-width:1100px;margin:0 auto;padding:1.5em}
h1,h2,h3,h4{line-height:1.25}h2{border-bottom:2px solid #ccd;padding-bottom:.2em;margin-top:2.5em}
a.anchor{visibility:hidden;text-decoration:none;margin-left:.3em;color:#99a}h2:hover a.anchor,h3:hover a.anchor,h4:hover a.anchor{visibility:visible}
header{background:#f5f6fa;border:1px solid #dde;border-radius:6px;padding:.5em 1.2em 1em}
nav.toc ol{margin:.2em 0}nav.toc>ol>li{margin:.3em 0}
table{border-collapse:collapse;margin:.6em 0;font-size:13px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #dde;padding:.2em .55em;text-align:right;vertical-align:top}th{background:#f0f1f6}
tbody tr:nth-child(odd){background:#fafbfd}
table.meta td,table.meta th{text-align:left}
.output{overflow-x:auto;margin:.4em 0}
pre{background:#f7f7f9;border:1px solid #e4e4ea;border-radius:4px;padding:.5em .8em;overflow-x:auto;font-size:12.5px;white-space:pre-wrap}
pre.error{background:#fdecec;border-color:#f3b4b4}
details>summary{cursor:pointer;color:#556;font-size:13px}
details.code pre{background:#fbfbfd}
figure{margin:.6em 0}figure img{max-width:100%;height:auto}figcaption{font-size:12px;color:#667}
p.nbmeta{color:#667;font-size:13px;margin-top:-.6em}
p.draft{background:#fff4d6;border:1px solid #e8c66a;border-radius:4px;padding:.3em .7em}
section#findings{border:1px solid #ccd;border-radius:6px;padding:0 1.2em .8em;margin:1.5em 0}
section#findings h2{margin-top:.8em}section#findings li{margin:.3em 0}
section.saved h4{margin:.8em 0 .2em;font-family:ui-monospace,monospace;font-size:13px}
"""


def book_path(profile_name: str) -> Path:
    """Where :func:`render` writes the one-file book: ``reports/book.html`` for the published
    (default) profile, ``reports/book/<profile>/book.html`` for every other one."""
    if profile_name == DEFAULT_PROFILE:
        return reports_dir() / "book.html"
    return reports_dir() / "book" / profile_name / "book.html"


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _terminal(text: str) -> str:
    """What a terminal would show: no ANSI colours, each line reduced to what follows its last ``\\r``."""
    text = _ANSI.sub("", text)
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n"))


def _markdown(source: str) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    return markdown2html_mistune(source)


def _rehead(body: str, prefix: str, seen: dict[str, int], toc: list[tuple[int, str, str]]) -> str:
    """Demote the headings of a notebook's markdown one level (the page's ``h1`` is the book's
    title), give each an id unique in the book, and record it for the table of contents."""

    def sub(m: re.Match) -> str:
        level = int(m.group(1))
        inner = re.sub(r'<a class="anchor-link".*?</a>', "", m.group(3), flags=re.S)
        text = html.unescape(re.sub(r"<[^>]+>", "", inner)).strip()
        hid = f"{prefix}--" + (re.sub(r"[^\w]+", "-", text.lower()).strip("-") or "section")
        seen[hid] = seen.get(hid, 0) + 1
        if seen[hid] > 1:
            hid += f"-{seen[hid]}"
        toc.append((level, hid, text))
        new = min(level + 1, 6)
        return f'<h{new} id="{hid}">{inner}<a class="anchor" href="#{hid}">&#182;</a></h{new}>'

    return _HEADING.sub(sub, body)


def _rich_output(out: Any, alt: str) -> tuple[str, str]:
    """``(kind, html)`` for a display or result: kind "log" for progress widgets, else "main"."""
    data = out.get("data", {})
    for mime in ("image/png", "image/jpeg", "image/gif"):
        if mime in data:
            b64 = "".join(_text(data[mime]).split())
            return "main", f'<figure><img alt="{html.escape(alt)}" src="data:{mime};base64,{b64}"></figure>'
    if "image/svg+xml" in data:
        return "main", f'<figure class="svg">{_text(data["image/svg+xml"])}</figure>'
    if "text/html" in data:
        body = _text(data["text/html"])
        # a progress widget (the HF Trainer's bar and loss table) is a log, not a result
        return ("log" if "<progress" in body else "main"), f'<div class="output">{body}</div>'
    if "text/markdown" in data:
        return "main", f'<div class="output">{_markdown(_text(data["text/markdown"]))}</div>'
    for mime in ("text/latex", "text/plain"):
        if mime in data:
            return "main", f"<pre>{html.escape(_terminal(_text(data[mime])))}</pre>"
    return "main", ""


def _outputs(cell: Any, alt: str) -> str:
    """A code cell's outputs; stderr and progress widgets folded into one "log" per run of them."""
    parts: list[tuple[str, str]] = []
    outs = list(cell.get("outputs", []))
    i = 0
    while i < len(outs):
        out = outs[i]
        if out.get("output_type") == "stream":  # consecutive chunks of one stream read as one text
            name, chunks = out.get("name"), []
            while i < len(outs) and outs[i].get("output_type") == "stream" and outs[i].get("name") == name:
                chunks.append(_text(outs[i].get("text", "")))
                i += 1
            text = _terminal("".join(chunks)).strip("\n")
            if text:
                parts.append(("log", f"<pre>{html.escape(text)}</pre>") if name == "stderr"
                             else ("main", f'<pre class="stdout">{html.escape(text)}</pre>'))
            continue
        if out.get("output_type") == "error":
            trace = _terminal("\n".join(out.get("traceback", []))) or f"{out.get('ename')}: {out.get('evalue')}"
            parts.append(("main", f'<pre class="error">{html.escape(trace)}</pre>'))
        else:
            parts.append(_rich_output(out, alt))
        i += 1
    merged, logs = [], []
    for kind, body in parts + [("main", "")]:
        if kind == "log":
            logs.append(body)
            continue
        if logs:
            merged.append('<details class="log"><summary>log (stderr, progress bars)</summary>'
                          f'{"".join(logs)}</details>')
            logs = []
        merged.append(body)
    return "".join(merged)


def _run_window(nb: Any) -> tuple[float, float] | None:
    """The notebook's execution interval (papermill's metadata), with a little slack."""
    pm_meta = nb.metadata.get("papermill", {})
    try:
        start = dt.datetime.fromisoformat(pm_meta["start_time"]).timestamp()
        end = dt.datetime.fromisoformat(pm_meta["end_time"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None
    return start - 2.0, end + 2.0


def _saved_files(run_dir: Path, prefix: str, window: tuple[float, float] | None) -> tuple[list[Path], list[Path]]:
    """The run's ``figures/NN_*.png`` and ``tables/NN_*.md`` written while the notebook ran (all of
    them when its execution time is unknown): files left by an earlier run are not this run's."""
    def keep(path: Path) -> bool:
        return window is None or window[0] <= path.stat().st_mtime <= window[1]

    figures = [p for p in sorted((run_dir / "figures").glob(f"{prefix}_*.png")) if keep(p)]
    tables = [p for p in sorted((run_dir / "tables").glob(f"{prefix}_*.md")) if keep(p)]
    return figures, tables


def _notebook_section(nb_path: Path, info: dict[str, Any], seen: dict[str, int], run_dir: Path) -> tuple[str, str, list]:
    """One notebook as a ``<section>``: narrative, code (folded), every output, and the files it saved."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    stem, toc, body = nb_path.stem, [], []
    for cell in nb.cells:
        source = _text(cell.get("source", ""))
        if cell.cell_type == "markdown":
            body.append(f'<div class="markdown">{_rehead(_markdown(source), stem, seen, toc)}</div>')
        elif cell.cell_type == "code" and not _SKIP_TAGS & set(cell.metadata.get("tags", [])):
            if source.strip():
                body.append('<details class="code"><summary>code</summary>'
                            f"<pre><code>{html.escape(source)}</code></pre></details>")
            body.append(_outputs(cell, f"{stem}: output of cell {cell.get('execution_count') or '?'}"))
    title = next((text for level, _, text in toc if level == 1), stem)
    status = info.get("status", "not in run.json")
    seconds = f" · {info['seconds']:.1f} s" if isinstance(info.get("seconds"), (int, float)) else ""
    figures, tables = _saved_files(run_dir, stem[:2], _run_window(nb))
    saved = ""
    if figures or tables:
        items = [f'<h4 id="{stem}--figure-{p.stem}">figures/{p.name}</h4><figure><img alt="{p.name}" '
                 f'src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}"></figure>' for p in figures]
        items += [f'<h4 id="{stem}--table-{p.stem}">reports/tables/{p.stem}.csv</h4><div class="output">'
                  f'{_markdown(p.read_text(encoding="utf-8"))}</div>' for p in tables]
        saved = (f'<details class="saved"><summary>Files this notebook saved: {len(figures)} figures, '
                 f'{len(tables)} tables</summary><section class="saved">{"".join(items)}</section></details>')
    nbmeta = f'<p class="nbmeta">{html.escape(nb_path.name)} · {html.escape(str(status))}{seconds}</p>'
    text = "".join(body)
    text = text.replace("</h2>", "</h2>" + nbmeta, 1) if "</h2>" in text else nbmeta + text  # under the title
    section = f'<section class="notebook" id="nb-{stem}" data-notebook="{stem}">{text}{saved}</section>'
    return title, section, toc


def _span(meta: dict[str, Any]) -> tuple[str, str]:
    """The run's true start and end: the first notebook's start and the last one's end (a run
    stitched from several invocations spans all of them)."""
    runs = meta.get("notebooks", {}).values()
    starts = sorted(str(r["started"]) for r in runs if r.get("started")) or [str(meta.get("started", "unknown"))]
    ends = sorted(str(r["finished"]) for r in runs if r.get("finished")) or [str(meta.get("finished", "not recorded"))]
    return starts[0], ends[-1]


def _header(profile_name: str, meta: dict[str, Any], metrics: dict[str, Any], executed: list[Path]) -> str:
    import yaml

    esc = html.escape
    if meta.get("profile"):
        prof_yaml, prof_note = yaml.safe_dump(meta["profile"], sort_keys=False, allow_unicode=True), "as run"
    else:
        current = load_profile(profile_name).model_dump(mode="json")
        prof_yaml = yaml.safe_dump(current, sort_keys=False, allow_unicode=True)
        prof_note = "current file; this run left no run.json"
    versions = sorted({str(r.get("code_version", "unknown")) for r in meta.get("notebooks", {}).values()}
                      or {str(meta.get("code_version", "unknown"))})
    machine = meta.get("machine", {})
    started, finished = _span(meta)
    rows = [("profile", profile_name), ("code version" + ("s" if len(versions) > 1 else ""), ", ".join(versions)),
            ("machine", ", ".join(f"{k} {v}" for k, v in machine.items()) or "not recorded"),
            ("python", meta.get("python", "unknown")),
            ("packages", ", ".join(f"{k} {v}" for k, v in meta.get("packages", {}).items() if v != "not installed")
             or "not recorded"),
            ("data directory", meta.get("data_dir", "unknown")), ("first notebook started", started),
            ("last notebook finished", finished), ("rendered", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))]
    info = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in rows)
    why = meta.get("published", {}).get("why_draft") or ([] if len(versions) == 1 and not versions[0].endswith("-dirty")
                                                        else ["not one clean commit"])
    banner = (f'<p class="draft" id="draft">Draft: {esc("; ".join(why))}.</p>' if why else "")
    prints = "".join(f"<tr><td>{esc(k)}</td><td><code>{esc(str(v))}</code></td></tr>"
                     for k, v in meta.get("data_fingerprint", {}).items()) or "<tr><td colspan=2>not recorded</td></tr>"
    durations, total = [], 0.0
    names = list(meta.get("notebooks", {}))
    names += [p.stem for p in executed if p.stem not in names]
    for stem in sorted(names):
        nb_info = meta.get("notebooks", {}).get(stem, {})
        secs = nb_info.get("seconds")
        total += secs if isinstance(secs, (int, float)) else 0.0
        link = f'<a href="#nb-{esc(stem)}">{esc(stem)}</a>' if any(p.stem == stem for p in executed) else esc(stem)
        durations.append(f"<tr><td>{link}</td><td>{esc(str(nb_info.get('status', 'unknown')))}</td>"
                         f"<td>{esc(str(nb_info.get('code_version', '')))}</td><td>{secs if secs is not None else ''}</td></tr>")
    durations.append(f"<tr><th>total</th><td></td><td></td><th>{total:.1f} ({total / 60:.0f} min)</th></tr>")
    metrics_block = (f'<details id="metrics"><summary>metrics.json</summary>'
                     f'<pre>{esc(json.dumps(metrics, indent=2))}</pre></details>'
                     if metrics else "")
    return (f'<header id="run"><h1>mlsearch research book — profile {esc(profile_name)}</h1>{banner}'
            f'<p class="nbmeta">{esc(", ".join(versions))} · {esc(started)} to {esc(finished)} · '
            f'{total / 60:.0f} min of notebooks · {esc(str(machine.get("cpu", "")))}</p>'
            f'<details id="run-details"><summary>Run: versions, machine, data, times</summary>'
            f'<table class="meta" id="run-info">{info}</table>'
            f'<h3>Data fingerprint (sha256)</h3><table class="meta" id="data-fingerprint">{prints}</table>'
            f'<h3>Notebooks</h3><table class="meta" id="durations"><tr><th>notebook</th><th>status</th>'
            f'<th>code version</th><th>seconds</th></tr>{"".join(durations)}</table>'
            f'<details id="profile-yaml"><summary>profile {esc(profile_name)} (YAML, {prof_note})</summary>'
            f"<pre>{esc(prof_yaml)}</pre></details>{metrics_block}</details></header>")


def _findings(run_dir: Path) -> str:
    """The Findings section (:mod:`mlsearch_lib.book.findings`) from the run's tables and figures."""
    from mlsearch_lib.book.findings import figure, findings_markdown

    text = findings_markdown(run_dir / "tables")
    if not text:
        return ""
    fig = figure(run_dir / "figures")
    img = (f'<figure><img alt="{html.escape(fig.name)}" src="data:image/png;base64,'
           f'{base64.b64encode(fig.read_bytes()).decode()}"><figcaption>figures/{html.escape(fig.name)}</figcaption></figure>'
           if fig else "")
    return (f'<section id="findings"><h2>Findings<a class="anchor" href="#findings">&#182;</a></h2>'
            f"<p>Written from this run's tables; every number below is in the sections that follow.</p>"
            f'<div class="output">{_markdown(text)}</div>{img}</section>')


def _portable(text: str) -> str:
    """``text`` with this machine's absolute paths shortened: the project root to ``.``, the home
    directory to ``~`` (a rendered book names no one's folders)."""
    return text.replace(str(PROJECT_ROOT), ".").replace(str(Path.home()), "~")


def book_html(profile_name: str, executed: list[Path], meta: dict[str, Any], metrics: dict[str, Any]) -> str:
    """The whole book as one HTML document: run header, table of contents, then every notebook."""
    seen: dict[str, int] = {}
    sections, toc_items = [], []
    for nb_path in executed:
        title, section, toc = _notebook_section(nb_path, meta.get("notebooks", {}).get(nb_path.stem, {}), seen,
                                                nb_path.parent.parent)
        sections.append(section)
        subs = "".join(f'<li><a href="#{hid}">{html.escape(text)}</a></li>' for level, hid, text in toc if level == 2)
        toc_items.append(f'<li><a href="#nb-{nb_path.stem}">{html.escape(title)}</a>'
                         f'{f"<ol>{subs}</ol>" if subs else ""}</li>')
    return ("<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>mlsearch book — {html.escape(profile_name)}</title><style>{_CSS}</style></head><body>"
            f"{_header(profile_name, meta, metrics, executed)}"
            f"{_findings(executed[0].parent.parent) if executed else ''}"
            f'<nav class="toc" id="toc"><h2>Contents</h2><ol>{"".join(toc_items)}</ol></nav>'
            f"<main>{''.join(sections)}</main></body></html>\n")


def render(profile_name: str, partial: bool = False) -> Path:
    """Render a run's executed notebooks into one self-contained HTML file (:func:`book_path`;
    figures inlined as base64 PNG), plus one nbconvert page per notebook and an index under
    ``reports/book/<profile>/``. Returns the book's path.

    A run that has not executed every notebook of the book (``--only`` on a fresh checkout) is
    refused unless ``partial``: a book silently missing sections looks complete."""
    import nbformat
    from nbconvert import HTMLExporter

    name = load_profile(profile_name).name
    run_dir = build_dir() / name
    executed = sorted((run_dir / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not executed:
        raise SystemExit(f"nothing to render: run `python -m mlsearch_lib.book run --profile {profile_name}` first")
    missing = [nb.name[:2] for nb in notebooks() if not (run_dir / "notebooks" / nb.name).is_file()]
    if missing and not partial:
        raise SystemExit(f"the {name} run has not executed notebook(s) {', '.join(missing)}: run `python -m "
                         f"mlsearch_lib.book run --profile {profile_name} --only {','.join(missing)}` first, or "
                         "render --partial to publish the executed ones alone")
    meta, metrics = read_json(run_dir / "run.json"), read_json(run_dir / "metrics.json")
    book = book_path(name)
    ensure(book.parent)
    tmp = book.with_suffix(".tmp")
    tmp.write_text(_portable(book_html(name, executed, meta, metrics)), encoding="utf-8")
    tmp.replace(book)

    out = ensure(reports_dir() / "book" / name)
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input_prompt = exporter.exclude_output_prompt = True
    links = []
    for nb_path in executed:
        body, _ = exporter.from_notebook_node(nbformat.read(nb_path, as_version=4))
        (out / f"{nb_path.stem}.html").write_text(_portable(body), encoding="utf-8")
        links.append(f'<li><a href="{nb_path.stem}.html">{nb_path.stem}</a></li>')
    index = (
        "<!doctype html><meta charset='utf-8'><title>mlsearch book</title>"
        f"<h1>mlsearch research book — profile {name}</h1>"
        f"<p>The whole book in one file: <a href='{os.path.relpath(book, out)}'>{book.name}</a>. "
        "One page per notebook:</p>"
        f"<ol>{''.join(links)}</ol>"
        f"<h2>Run metadata</h2><pre>{html.escape(json.dumps(meta, indent=2, default=str))}</pre>"
    )
    (out / "index.html").write_text(_portable(index), encoding="utf-8")
    return book
