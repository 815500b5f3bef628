"""The book's findings, written from a run's own tables (never typed by hand): the rendered book
opens with them and a published run writes the headline table into the README.

What they say: per task, the best system beside the two references (all "yes", TF-IDF) and the
seed's published F1 (theirs, on another test set); which ablation arms moved beyond fold noise;
what languages unseen in training cost.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from mlsearch_lib.book.outputs import markdown_table
from mlsearch_lib.config.paths import write_atomically

TASKS = ("QC", "QI")
#: The README's findings live between these two lines; a published run rewrites what is between.
README_START, README_END = "<!-- findings:start -->", "<!-- findings:end -->"
#: The figure the Findings section shows, first found wins.
FIGURES = ("04_model_comparison.png", "04_per_language_roc_auc.png", "04_learning_curve.png")


def _read(tables: Path, name: str) -> pd.DataFrame | None:
    path = tables / f"{name}.csv"
    return pd.read_csv(path) if path.is_file() else None


def _seed_f1(task: str) -> float | None:
    from mlsearch_lib.evaluation.ablation import seed_results

    return seed_results().get("table3", {}).get("DILAB (all components)", {}).get(task)


def headline(tables: Path, task: str) -> pd.DataFrame | None:
    """The references, the best of 04's systems (by out-of-fold ROC-AUC, the stack included) and
    the seed's F1, one row each; ``None`` when notebook 04 left no results table."""
    results = _read(tables, f"04_results_{task}")
    if results is None:
        return None
    stacked = _read(tables, f"04_stacked_{task}")
    candidates = pd.concat([results, stacked], ignore_index=True) if stacked is not None else results
    refs = results[results["model"].isin(['all "yes"', "TF-IDF char n-gram + LR"])]
    best = candidates[~candidates["model"].isin(refs["model"])].sort_values("roc_auc").tail(1)
    if "Δroc_auc vs TF-IDF" in best and best["Δroc_auc vs TF-IDF"].notna().all():  # a stacked row: its gain over TF-IDF
        best = best.assign(**{c: best[f"{c} vs TF-IDF"] for c in ("Δroc_auc", "Δroc_auc 95% lo", "Δroc_auc 95% hi")})
    rows = pd.concat([refs, best], ignore_index=True)
    rows["system"] = rows["model"].where(rows.index < len(refs), "best: " + rows["model"])
    out = rows[["system", "f1@tuned", "roc_auc", "pr_auc", "Δroc_auc", "Δroc_auc 95% lo", "Δroc_auc 95% hi"]].copy()
    seed = _seed_f1(task)
    if seed is not None:
        theirs = {"system": "DILAB, Qwen2.5-14B + LoRA (theirs: private test set)", "f1@tuned": seed}
        out = pd.concat([out, pd.DataFrame([theirs])], ignore_index=True)
    return out.rename(columns={"Δroc_auc": "ΔROC-AUC vs TF-IDF", "Δroc_auc 95% lo": "95% lo", "Δroc_auc 95% hi": "95% hi",
                               "f1@tuned": "F1 (tuned)", "roc_auc": "ROC-AUC", "pr_auc": "PR-AUC"}).set_index("system")


def ablation_verdict(tables: Path, task: str) -> str | None:
    """One sentence on notebook 06's Table 4 arms: which moved ROC-AUC beyond fold noise."""
    table = _read(tables, f"06_table4_{task}")
    if table is None or "beyond fold noise" not in table:
        return None
    arms = table[table["arm"] != "none"]
    moved = arms[arms["beyond fold noise"].astype(str) == "True"]
    detail = ", ".join(f"{r.arm} {r['Δroc_auc vs none']:+.4f}" for _, r in arms.iterrows())
    rows = int(table["rows"].iloc[0]) if "rows" in table else None
    size = f" on {rows:,} rows" if rows else ""
    if moved.empty:
        return f"{task}: no arm moved ROC-AUC beyond fold noise{size} (Δ vs none: {detail})."
    return f"{task}: {', '.join(moved['arm'])} moved ROC-AUC beyond fold noise{size} (Δ vs none: {detail})."


def unseen_cost(tables: Path) -> str | None:
    """One sentence on notebook 04's unseen-language table: the best model's ROC-AUC on the
    languages left out of training, against the same rows when they are in it."""
    table = _read(tables, "04_unseen_languages_QC")
    if table is None:
        return None
    model = table["model"].iloc[-1]
    rows = table[(table["model"] == model) & (table["evaluated on"] == "unseen")].set_index("trained on")["roc_auc"]
    if len(rows) < 2:
        return None
    official = next(name for name in rows.index if name != "all languages")
    cost = rows["all languages"] - rows[official]
    return (f"Unseen languages (QC): trained on {official} only, {model} scores {rows[official]:.4f} ROC-AUC on "
            f"the other languages, against {rows['all languages']:.4f} when they are in training: they cost {cost:.4f}.")


def findings_markdown(tables: Path, headline_only: bool = False) -> str:
    """The Findings as markdown: headline tables (and, unless ``headline_only``, the ablation and
    unseen-language sentences). Empty when the run left none of the tables."""
    parts = []
    for task in TASKS:
        table = headline(tables, task)
        if table is not None:
            stand_in = " (English stand-in data, not the competition's)" if task == "QI" else ""
            parts.append(f"**{task}**{stand_in}, out-of-fold:\n\n{markdown_table(table)}")
    if not headline_only:
        sentences = [s for s in (*(ablation_verdict(tables, t) for t in TASKS), unseen_cost(tables)) if s]
        parts += [f"- {s}" for s in sentences]
    return "\n\n".join(parts)


def figure(figures: Path) -> Path | None:
    return next((figures / name for name in FIGURES if (figures / name).is_file()), None)


def run_line(meta: dict) -> str:
    """One line on where the numbers come from: the commit, wall time in all and per notebook, the
    machine (the README states what a book run costs from the run itself, never by hand)."""
    runs = meta.get("notebooks", {})
    if not runs:
        return ""
    versions = sorted({str(r.get("code_version", "unknown")) for r in runs.values()})
    total = sum(float(r.get("seconds") or 0) for r in runs.values())
    times = " · ".join(f"{stem[:2]} {float(r.get('seconds') or 0):,.0f} s" for stem, r in sorted(runs.items()))
    machine = meta.get("machine", {})
    where = ", ".join(str(machine[k]) + (" cores" if k == "cores" else "") for k in ("cpu", "cores") if k in machine)
    return (f"From one book run at `{', '.join(versions)}`: {total / 60:.1f} min of notebooks ({times})"
            + (f" on {where}" if where else "") + ".")


def update_readme(readme: Path, tables: Path, profile_name: str, meta: dict | None = None) -> bool:
    """Rewrite the README's findings block (between :data:`README_START` and :data:`README_END`)
    from ``tables`` and the run's ``meta`` (run.json); a README without the markers is left alone.
    Returns whether it was rewritten."""
    if not readme.is_file():
        return False
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        return False
    body = findings_markdown(tables, headline_only=True)
    if not body:
        return False
    line = run_line(meta or {})
    block = (f"{README_START}\n<!-- written by the `{profile_name}` book run from its tables; do not edit -->\n\n"
             f"{body}\n\n" + (f"{line}\n\n" if line else "") + README_END)
    new = re.sub(re.escape(README_START) + ".*?" + re.escape(README_END), lambda _: block, text, flags=re.DOTALL)
    write_atomically(readme, lambda tmp: tmp.write_text(new, encoding="utf-8"))
    return True
