"""A gain is believable when it survives another fold split: the out-of-fold tables of some model
kinds under several profile seeds (each seed draws its own query-grouped folds and seeds the
models), every kind's ROC-AUC gain over each earlier kind with its grouped bootstrap interval, and
the spread across seeds.

    python -m mlsearch_lib.evaluation.seed_spread --profile cpu --task QC \\
        --kinds tfidf hybrid_nl hybrid_cat hybrid_pmi --seeds 13 29

writes ``reports/probes/<task>_seed_spread.md`` (``--name``: another file). A kind ``a+b`` is the
stack of ``a`` and ``b`` (:func:`~mlsearch_lib.models.stacking.stacked_oof`, as notebook 04 fits
it), so a submitted system's gain over another stack gets its spread too. Fold caches are the
book's own (``build/<profile>/folds``): the profile's seed reuses what the book computed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mlsearch_lib.config.paths import ensure, reports_dir
from mlsearch_lib.config.profiles import Profile, load_profile
from mlsearch_lib.data.folds import query_groups
from mlsearch_lib.evaluation import experiments
from mlsearch_lib.evaluation.metrics import auc_delta_interval
from mlsearch_lib.models import stacking
from mlsearch_lib.models.relevance import LABELS


def seed_spread(task: str, profile: Profile, kinds: Sequence[str], seeds: Sequence[int]
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per seed and kind: metrics and fit seconds; per seed and pair of kinds: ΔROC-AUC and its 95% interval)."""
    results, gains = [], []
    for seed in seeds:
        prof = profile.model_copy(update={"seed": seed})
        df, folds = experiments.prepare(task, prof)
        oofs = {}
        y = df["label"].to_numpy()
        for kind in kinds:
            start = time.perf_counter()
            for part in kind.split("+"):
                if part not in oofs:
                    oofs[part] = experiments.out_of_fold(task, prof, df, folds, [part])[part]
            if "+" in kind:
                oofs[kind] = stacking.stacked_oof(y, folds, {k: oofs[k] for k in kind.split("+")})[0]
            seconds = time.perf_counter() - start
            row = experiments.results_table(df, folds, {kind: oofs[kind]}).iloc[0]
            results.append({"seed": seed, "model": kind, "roc_auc": row["roc_auc"], "pr_auc": row["pr_auc"],
                            "f1@tuned": row["f1@tuned"], "seconds (cache hits are fast)": seconds})
        groups = query_groups(df)
        for i, kind in enumerate(kinds):
            for ref in kinds[:i]:
                d, lo, hi = auc_delta_interval(y, oofs[kind], oofs[ref], groups)
                gains.append({"seed": seed, "model": kind, "over": ref, "Δroc_auc": d, "95% lo": lo, "95% hi": hi})
    return pd.DataFrame(results), pd.DataFrame(gains)


def spread(frame: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Mean, min and max of ``value`` across seeds."""
    return frame.groupby(by, sort=False)[value].agg(["mean", "min", "max"]).add_prefix(f"{value} ")


def report(task: str, profile: Profile, results: pd.DataFrame, gains: pd.DataFrame) -> str:
    label = lambda s: s.map(lambda k: stacking.label(k.split("+")) if "+" in k else LABELS.get(k, k))  # noqa: E731
    shown = results.assign(model=label(results["model"]))
    g = gains.assign(model=label(gains["model"]), over=label(gains["over"]))
    return "\n\n".join([
        f"# {task}: out-of-fold gains across fold splits (`{profile.name}` profile, seeds "
        f"{', '.join(map(str, results['seed'].unique()))}, {profile.validation.folds} query-grouped folds)",
        "Each seed draws its own folds and seeds its models; intervals are paired bootstraps over queries.",
        "## Per seed\n\n" + shown.to_markdown(index=False, floatfmt=".4f"),
        "## Gains\n\n" + g.to_markdown(index=False, floatfmt=".4f"),
        "## Spread across seeds\n\n" + spread(shown, ["model"], "roc_auc").join(
            spread(shown, ["model"], "f1@tuned")).to_markdown(floatfmt=".4f"),
        spread(g, ["model", "over"], "Δroc_auc").to_markdown(floatfmt=".4f"),
    ]) + "\n"


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--task", default="QC", choices=["QC", "QI"])
    ap.add_argument("--kinds", nargs="+", default=["tfidf", "hybrid_nl", "hybrid_cat"],
                    help="model kinds, and stacks as a+b (e.g. hybrid_nl+encoder)")
    ap.add_argument("--name", help="the report's file name in reports/probes/ (default: <task>_seed_spread)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[13, 29])
    args = ap.parse_args(argv)
    profile = load_profile(args.profile)
    results, gains = seed_spread(args.task, profile, args.kinds, args.seeds)
    text = report(args.task, profile, results, gains)
    out = ensure(reports_dir() / "probes") / f"{args.name or args.task + '_seed_spread'}.md"
    out.write_text(text, encoding="utf-8")
    print(text)
    return out


if __name__ == "__main__":
    main()
