"""One fold, growing training sets, several models: would more data close a gap?

``python -m mlsearch_lib.bench.data_curve --task QC --fold 0`` trains the profile's main backbone and
the references (TF-IDF, neighbour labels) on nested shares of the other folds — whole queries
drawn at once, so a smaller set is a subset of a larger one and never holds half a query —
scores the held-out fold, and writes ROC-AUC / PR-AUC per share, the main model's ROC-AUC gain
over TF-IDF with a query-grouped bootstrap interval, and a figure, to
``reports/probes/data_curve/<task>_fold<k>.{md,json,png}``.

Notebook 04's learning curve is TF-IDF's alone (every size on every fold); the cross-encoder is
too slow for that on a CPU, so this asks the question that decides the issue's QC target on one
fold: does the cross-encoder's margin over TF-IDF grow with the training rows?
"""

from __future__ import annotations

import json
import time
from typing import Any, Sequence

import numpy as np
import pandas as pd

from mlsearch_lib.bench.probe import fold_parser
from mlsearch_lib.book.outputs import markdown_table
from mlsearch_lib.config.paths import ensure, reports_dir
from mlsearch_lib.config.profiles import Profile, load_profile, parse_sets
from mlsearch_lib.data.folds import query_groups
from mlsearch_lib.data.records import task_title
from mlsearch_lib.evaluation.experiments import prepare
from mlsearch_lib.evaluation.metrics import auc_delta_interval, scores
from mlsearch_lib.models.relevance import LABELS, RelevanceModel

FRACTIONS = (0.25, 0.5, 1.0)


def nested_shares(df: pd.DataFrame, train: np.ndarray, fractions: Sequence[float], seed: int) -> dict[float, np.ndarray]:
    """Row masks, one per fraction, each holding about that share of ``train``'s queries.

    Every query draws one uniform number; a share keeps the queries whose number is below it, so
    the masks are nested and a query's rows are kept or dropped together.
    """
    groups = query_groups(df)
    draw = np.random.default_rng(seed).random(int(groups.max()) + 1)[groups]
    return {f: train & (draw < f) for f in fractions}


def run_data_curve(task: str, fold: int, profile: Profile, fractions: Sequence[float] = FRACTIONS,
                   kinds: Sequence[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Held-out scores of each model trained on each share of the other folds (see module doc)."""
    df, folds = prepare(task, profile)  # type: ignore[arg-type]
    if fold not in set(folds):
        raise ValueError(f"fold {fold}: the profile has folds 0..{folds.max()}")
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"fractions must lie in (0, 1], got {list(fractions)}")
    kinds = list(dict.fromkeys(kinds or ["tfidf", "hybrid_nl", profile.backbone]))
    val = folds == fold
    held = df[val].reset_index(drop=True)
    y, queries = held["label"].to_numpy(), query_groups(held)
    rows, p_by = [], {}
    for frac, mask in sorted(nested_shares(df, folds != fold, fractions, profile.seed).items()):
        train = df[mask].reset_index(drop=True)
        for kind in kinds:
            t0 = time.perf_counter()
            model = RelevanceModel(kind, task, profile)
            fit_log = model.fit(train) or {}
            p = model.predict_proba(held)
            p_by[(frac, kind)] = p
            s = scores(y, p)
            # fit_rows: what the model trained on, fewer than train_rows under a row cap (max_train_rows)
            rows.append({"fraction": frac, "train_rows": len(train), "model": kind,
                         "fit_rows": int(fit_log.get("train_rows", len(train))), "roc_auc": s["roc_auc"],
                         "pr_auc": s["pr_auc"], "seconds": round(time.perf_counter() - t0)})
            if progress:
                print(f"{task} fold {fold}, {frac:g} of the training rows ({len(train):,}), {kind}: "
                      f"ROC-AUC {s['roc_auc']:.4f} in {rows[-1]['seconds']:.0f} s", flush=True)
    gains = []
    for frac in sorted(set(fractions)):
        for kind in kinds[1:]:
            d, lo, hi = auc_delta_interval(y, p_by[(frac, kind)], p_by[(frac, kinds[0])], queries, seed=profile.seed)
            gains.append({"fraction": frac, "model": kind, "delta": d, "lo": lo, "hi": hi})
    return {"task": task, "title": task_title(task, profile.data), "fold": fold, "profile": profile.name, "reference": kinds[0], "val_rows": int(val.sum()),
            "rows": rows, "gains": gains}


def write_data_curve(res: dict[str, Any]) -> str:
    """The report (markdown + json) and figure of :func:`run_data_curve`; returns the markdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = ensure(reports_dir() / "probes" / "data_curve")
    stem = f"{res['task']}_fold{res['fold']}"
    table = pd.DataFrame(res["rows"]).assign(share=lambda t: [f"{f:.0%}" for f in t["fraction"]])
    wide = table.pivot_table(index=["fraction", "share", "train_rows"], columns="model", values="roc_auc")
    wide = wide[list(dict.fromkeys(table["model"]))].rename(columns=LABELS).droplevel("fraction")
    gains = pd.DataFrame(res["gains"])
    gain = "ROC-AUC gain over " + LABELS[res["reference"]]
    gains = pd.DataFrame({"share": [f"{f:.0%}" for f in gains["fraction"]], "model": gains["model"].map(LABELS),
                          gain: [f"{g.delta:+.4f} [{g.lo:+.4f}, {g.hi:+.4f}]" for g in gains.itertuples()]})
    text = (f"# Data curve: {res['title']} fold {res['fold']} ({res['profile']} profile)\n\n"
            f"Each model trained on nested shares of the other folds (whole queries), scored on the held-out fold "
            f"({res['val_rows']:,} rows). Written by `python -m mlsearch_lib.bench.data_curve`.\n\n"
            "## Held-out ROC-AUC\n\n" + markdown_table(wide) + "\n\n"
            "## Gain over the reference (95% query-grouped bootstrap interval)\n\n" + markdown_table(gains) + "\n\n"
            "## All scores\n\n" + markdown_table(table.drop(columns="fraction").set_index(["share", "model"])) + "\n")
    (out / f"{stem}.md").write_text(text, encoding="utf-8")
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for kind, part in table.groupby("model", sort=False):
        ax.plot(part["train_rows"], part["roc_auc"], marker="o", label=LABELS[kind])
    ax.set(xscale="log", xlabel="training rows (log scale)", ylabel="held-out ROC-AUC",
           title=f"{res['title']} fold {res['fold']}: ROC-AUC against training rows")
    ticks = sorted(set(table["train_rows"]))
    ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
    ax.minorticks_off()
    ax.legend(fontsize=8)
    fig.savefig(out / f"{stem}.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = fold_parser("python -m mlsearch_lib.bench.data_curve", __doc__.split("\n\n")[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS),
                        help="shares of the fold's training rows to train on (default: %(default)s)")
    parser.add_argument("--models", nargs="+", help="backbone kinds, the reference first (default: tfidf, "
                        "hybrid_nl and the profile's backbone)")
    args = parser.parse_args(argv)
    profile = load_profile(args.profile, parse_sets(args.overrides))
    print(write_data_curve(run_data_curve(args.task, args.fold, profile, args.fractions, args.models)))


if __name__ == "__main__":
    main()
