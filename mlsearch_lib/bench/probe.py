"""One fold, one model, watched while it trains: how far a setting can go beyond the book's budget.

``python -m mlsearch_lib.bench.probe --task QC --fold 0 --set encoder.train_top_layers=4 --set encoder.epochs=3``
trains the profile's backbone (``cpu`` by default) on every other fold of the book's own grouped
folds, scores the held-out fold ten times while it trains, and writes the curve of held-out
ROC-AUC against epochs to ``reports/probes/<task>_fold<k>_<name>.md`` beside the TF-IDF
reference on the same fold. The book's notebooks run a profile's budget; a probe answers "would
more of it help?" without a full 5-fold run.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import pandas as pd
from sklearn.metrics import roc_auc_score

from mlsearch_lib.config.paths import ensure, reports_dir
from mlsearch_lib.config.profiles import Profile, load_profile, parse_sets
from mlsearch_lib.evaluation.ablation import qr_weights
from mlsearch_lib.evaluation.experiments import prepare
from mlsearch_lib.models.relevance import RelevanceModel, distill_targets


def run_probe(task: str, fold: int, profile: Profile, train_seed: int | None = None, qr: bool = False) -> dict[str, Any]:
    """Held-out ROC-AUC of ``profile.backbone`` during training on one fold, and TF-IDF's on it.

    ``train_seed`` reseeds only the model (head init, batch order), not the data sample or the
    folds, so two seeds on the same fold measure training noise. ``qr`` trains the backbone on
    quality-refinement weights (:func:`~mlsearch_lib.evaluation.ablation.qr_weights`); TF-IDF stays plain."""
    df, folds = prepare(task, profile)  # type: ignore[arg-type]
    if fold not in set(folds):
        raise ValueError(f"fold {fold}: the profile has folds 0..{folds.max()}")
    weights = qr_weights(task, profile, df)[folds != fold] if qr else None  # a 5-fold run: after the check
    profile = profile if train_seed is None else profile.model_copy(update={"seed": train_seed})
    train, val = df[folds != fold].reset_index(drop=True), df[folds == fold].reset_index(drop=True)
    y = val["label"].to_numpy()
    reference = RelevanceModel("tfidf", task, profile)
    reference.fit(train)
    model = RelevanceModel(profile.backbone, task, profile)
    model.builder.fit(train)
    t0 = time.perf_counter()
    # positional: the encoder names its held-out inputs eval_pairs, the causal LM eval_prompts
    extra = {"targets": distill_targets(train, task, profile, weights)} if model.distills else {}
    log = model.backbone.fit(model._inputs(train), train["label"].to_numpy(), weights, None, model._inputs(val), y,
                             **extra)
    curve = [{"step": h["step"], "epoch": round(float(h["epoch"]), 3), "eval_auc": h["eval_auc"]}
             for h in log["history"] if "eval_auc" in h]
    return {"task": task, "fold": fold, "backbone": profile.backbone, "train_seed": profile.seed, "qr": qr,
            "settings": model.backbone.cfg.model_dump(), "prompt": model.builder.cfg.model_dump(),
            "train_rows": int(log["train_rows"]), "val_rows": int(len(val)), "seconds": round(time.perf_counter() - t0, 1),
            "tfidf_auc": float(roc_auc_score(y, reference.predict_proba(val))), "curve": curve}


def write_probe(res: dict[str, Any], name: str) -> str:
    curve = pd.DataFrame(res["curve"]).drop_duplicates("step", keep="last").astype({"step": int})
    curve["Δ vs TF-IDF"] = curve["eval_auc"] - res["tfidf_auc"]
    text = (f"# Probe {name}: {res['task']} fold {res['fold']}, {res['backbone']}\n\n"
            f"Trained on {res['train_rows']:,} rows in {res['seconds']:.0f} s; held-out fold {res['val_rows']:,} rows. "
            f"TF-IDF char n-gram + LR on the same fold: ROC-AUC {res['tfidf_auc']:.4f}.\n\n"
            f"Settings: `{json.dumps(res['settings'], sort_keys=True)}`\n\n"
            + curve.to_markdown(index=False, floatfmt=(".0f", ".3f", ".4f", "+.4f")) + "\n")
    out = ensure(reports_dir() / "probes")
    stem = f"{res['task']}_fold{res['fold']}_{name}"
    (out / f"{stem}.md").write_text(text, encoding="utf-8")
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    write_index()
    return text


_INDEX_SETTINGS = ("train_top_layers", "epochs", "lr", "group_by_length", "pooling")
_INDEX_PROMPT = ("lt", "hct")  # the prompt flags that change the encoder's text pair
_INDEX_FORMATS = {"seconds": ".0f", "TF-IDF": ".4f", "last": ".4f", "last − TF-IDF": "+.4f", "best": ".4f",
                  "best at epoch": ".2f"}  # by column name; the rest as written ("g")


def write_index() -> pd.DataFrame:
    """``reports/probes/README.md``: every probe in one table, last and best held-out ROC-AUC
    beside TF-IDF's on the same fold, so probes of one question read side by side."""
    out = reports_dir() / "probes"
    rows = []
    for path in sorted(out.glob("*_fold*_*.json")):
        res = json.loads(path.read_text(encoding="utf-8"))
        best = max(res["curve"], key=lambda c: c["eval_auc"])
        rows.append({"task": res["task"], "fold": res["fold"], "probe": path.stem.split("_", 2)[2],
                     "train seed": res.get("train_seed", "—"), "qr": res.get("qr", False),
                     **{k: res["settings"].get(k, "—") for k in _INDEX_SETTINGS},  # "—": probe predates the key
                     **{k: res.get("prompt", {}).get(k, "—") for k in _INDEX_PROMPT},
                     "seconds": res["seconds"], "TF-IDF": res["tfidf_auc"], "last": res["curve"][-1]["eval_auc"],
                     "best": best["eval_auc"], "best at epoch": best["epoch"]})
    table = pd.DataFrame(rows).sort_values(["task", "fold", "probe"], kind="stable")
    table.insert(len(table.columns) - 2, "last − TF-IDF", table["last"] - table["TF-IDF"])
    (out / "README.md").write_text(
        "# Probes\n\nOne fold each, written by `python -m mlsearch_lib.bench.probe` (regenerated after every probe); "
        "held-out ROC-AUC at the end of training (last) and at its best evaluation, beside TF-IDF char n-gram + LR "
        "trained on the same rows. Details and curves: one `.md` per probe.\n\n"
        + table.to_markdown(index=False, floatfmt=[_INDEX_FORMATS.get(c, "g") for c in table.columns])
        + "\n", encoding="utf-8")
    return table


def fold_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The arguments every one-fold study takes: task, fold, profile and its overrides."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--task", choices=["QC", "QI"], default="QC", help="the task (default: QC)")
    parser.add_argument("--fold", type=int, default=0, help="the held-out fold scored (default: 0)")
    parser.add_argument("--profile", default="cpu", help="a name in profiles/ or a YAML path (default: cpu)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="profile override, e.g. encoder.epochs=3 (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = fold_parser("python -m mlsearch_lib.bench.probe", __doc__.split("\n\n")[0])
    parser.add_argument("--train-seed", type=int, help="reseed the model only (same data and folds): training noise")
    parser.add_argument("--qr", action="store_true", help="train on quality-refinement weights (TF-IDF stays plain)")
    parser.add_argument("--name", help="report name (default: the overrides joined)")
    args = parser.parse_args(argv)
    profile = load_profile(args.profile, parse_sets(args.overrides))
    name = args.name or ("_".join(o.split(".")[-1].replace("=", "") for o in args.overrides) or args.profile)
    print(write_probe(run_probe(args.task, args.fold, profile, args.train_seed, args.qr), name))


if __name__ == "__main__":
    main()
