"""Prediction, scoring and evaluation outside the notebooks.

    python -m mlsearch_lib predict --task QC --model DIR --input FILE --output FILE [--threshold T]
    python -m mlsearch_lib predict ... [--shard-rows N] [--workers N --worker I | --ray N]
    python -m mlsearch_lib score --task QC --model DIR --query TEXT --category PATH [--language xx]
    python -m mlsearch_lib score --task QI --model DIR --query TEXT --title TEXT [--threshold T]
    python -m mlsearch_lib evaluate --pred FILE --gold FILE

Input files are the official schema: JSON lines (or CSV) with ``id``, ``language``,
``origin_query`` and ``category_path`` (QC) or ``item_title`` (QI), plus ``label`` (0/1) in a
gold file. ``predict`` writes JSON lines ``{"id", "prediction", "p_yes"}``: one line per input
id, in input order. It streams the input in shards (``FILE.shards/``, resumed after a kill;
:mod:`mlsearch_lib.evaluation.predict`), joins them through ``FILE.partial`` and renames when
complete, and refuses to replace an existing output (or a leftover ``.partial``) unless
``--overwrite`` is given.
``score`` scores one pair, read exactly as ``predict`` reads a line of its input, and prints
its p(yes) and the decision at the model's threshold.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from mlsearch_lib.data.records import DataFormatError, read_task_file
from mlsearch_lib.evaluation.metrics import by_language
from mlsearch_lib.evaluation.predict import (  # noqa: F401 - predict_file and score_pair: the notebooks' and tests' names
    SHARD_ROWS,
    predict_file,
    predict_shards,
    predict_with_ray,
    read_predictions,
    score_pair,
)


def evaluate_files(pred_path: Path, gold_path: Path) -> pd.DataFrame:
    """F1 (of the written predictions), ROC-AUC and PR-AUC (of p_yes) overall and per language.

    As strict as the official checker: exactly one 0/1 prediction per gold id, no other ids."""
    gold = read_task_file(gold_path)
    if not gold.attrs["labelled"]:
        raise DataFormatError(gold_path, 1, "label", "the gold file has no labels")
    pred = read_predictions(pred_path)
    gold_ids = set(gold["id"].tolist())
    extra = pred[~pred["id"].isin(gold_ids)]
    if len(extra):
        raise DataFormatError(pred_path, int(extra["line"].iloc[0]), "id",
                              f"{len(extra)} id(s) not in {gold_path}, e.g. {extra['id'].iloc[0]!r}")
    merged = gold.merge(pred, on="id", how="left", validate="one_to_one")
    missing = merged["prediction"].isna()
    if missing.any():
        raise DataFormatError(pred_path, 0, "id", f"{int(missing.sum())} gold id(s) have no prediction, "
                              f"e.g. {merged.loc[missing, 'id'].iloc[0]!r}")
    score = merged["p_yes"].to_numpy(float) if "p_yes" in merged else merged["prediction"].to_numpy(float)
    # F1 of the submitted 0/1 predictions: threshold 0.5 on the predictions themselves
    table = by_language(merged["language"], merged["label"].to_numpy(), score, 0.5)
    f1 = by_language(merged["language"], merged["label"].to_numpy(), merged["prediction"].to_numpy(float), 0.5)["f1"]
    table["f1"] = f1
    return table


FORMATS = ("Input files (--input, --gold): JSON lines (or CSV) with fields id, language, origin_query and "
           "category_path (QC) or item_title (QI), plus label (0 or 1) in a gold file. Prediction files (--output, "
           "--pred): JSON lines {\"id\", \"prediction\" (0 or 1), \"p_yes\" (in [0, 1])}, one per input id, "
           "in input order.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlsearch_lib",
        description="Predict with a saved model, score one pair, or evaluate predictions. " + FORMATS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{predict,score,evaluate}")

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--task", choices=["QC", "QI"], required=True,
                       help="QC: query-category relevance; QI: query-item relevance")
        p.add_argument("--model", type=Path, required=True,
                       help="a saved model directory (notebook 05's build/<profile>/models/<task>, or "
                            "python -m mlsearch_lib.models.train --output): one model, or a stack of them")
        p.add_argument("--threshold", type=float,
                       help="decide p(yes) >= this value, in (0, 1); default: the model's tuned thresholds.json "
                            "(per language, else global), required when the model has none")
        p.add_argument("--trust-model", action="store_true",
                       help="load pickled weights from outside this checkout's build dir (loading a pickle runs code)")

    p = sub.add_parser("predict", help="p(yes) and a 0/1 prediction for every line of an input file",
                       description="Write one prediction per input line. " + FORMATS)
    model_args(p)
    p.add_argument("--input", type=Path, required=True,
                   help="JSON lines (or .csv): id, language, origin_query, category_path (QC) or item_title (QI)")
    p.add_argument("--output", type=Path, required=True,
                   help='JSON lines {"id", "prediction", "p_yes"}, written to OUTPUT.partial, then renamed')
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --output (and start again instead of resuming OUTPUT.shards/)")
    p.add_argument("--shard-rows", type=int, default=SHARD_ROWS,
                   help=f"input lines a shard (default {SHARD_ROWS:,}): the unit that is written, resumed and shared out")
    p.add_argument("--workers", type=int, default=1,
                   help="how many data-parallel workers share the shards (with --worker: a SLURM array's size)")
    p.add_argument("--worker", type=int,
                   help="this worker's index in 0..workers-1 (e.g. $SLURM_ARRAY_TASK_ID): it scores its shards and "
                        "leaves them; a later run without --worker joins them into --output")
    p.add_argument("--ray", type=int, metavar="N",
                   help="run N workers as Ray tasks (one GPU each where the cluster has GPUs), then join")
    p.add_argument("--ray-address", help="a running Ray cluster ('auto'); default: start one on this machine")

    s = sub.add_parser("score", help="p(yes) and the decision for one query and category (QC) or title (QI)",
                       description="Score one pair with a saved model and print its p(yes), the threshold and the "
                                   "decision (1 = relevant); --json prints them as one JSON object "
                                   '{"p_yes", "threshold", "prediction"}. The pair is read as predict reads a line '
                                   "of its input (fields language, origin_query and category_path or item_title).")
    model_args(s)
    s.add_argument("--query", required=True, help="the search query (the origin_query field)")
    item = s.add_mutually_exclusive_group(required=True)
    item.add_argument("--category", help="QC: the category path, levels joined by ',' (the category_path field)")
    item.add_argument("--title", help="QI: the item title (the item_title field)")
    s.add_argument("--language", default="en",
                   help="the query's language code, e.g. fr (the language field; picks its tuned threshold; "
                        "default: en)")
    s.add_argument("--json", action="store_true", help='print {"p_yes", "threshold", "prediction"} as one JSON line')

    e = sub.add_parser("evaluate", help="F1, ROC-AUC and PR-AUC of a prediction file, overall and per language",
                       description="Score a prediction file against a gold file, as strict as the official checker: "
                                   "exactly one prediction per gold id. " + FORMATS)
    e.add_argument("--pred", type=Path, required=True,
                   help='predictions: JSON lines {"id", "prediction" (0/1), "p_yes" (optional, in [0, 1])}')
    e.add_argument("--gold", type=Path, required=True,
                   help="the labelled file: JSON lines (or .csv) with id, language, origin_query, the item field "
                        "and label")
    return parser


def _predict(args: argparse.Namespace) -> str:
    overwrite = args.overwrite
    if args.ray:
        if args.worker is not None:
            raise ValueError("--ray starts its own workers: give --ray or --worker, not both")
        if overwrite:  # start again: the workers must not find the old shards, the join must not remove theirs
            shutil.rmtree(args.output.with_name(args.output.name + ".shards"), ignore_errors=True)
            args.output.with_name(args.output.name + ".partial").unlink(missing_ok=True)
            args.output.unlink(missing_ok=True)
            overwrite = False
        worker_args = ["--task", args.task, "--model", str(args.model), "--input", str(args.input), "--output",
                       str(args.output), "--shard-rows", str(args.shard_rows)]
        worker_args += (["--threshold", repr(args.threshold)] if args.threshold is not None else [])
        worker_args += ["--trust-model"] if args.trust_model else []
        predict_with_ray(worker_args, args.ray, args.ray_address)
    n = predict_shards(args.task, args.model, args.input, args.output, args.threshold, overwrite, args.trust_model,
                       args.shard_rows, args.worker, args.workers if args.worker is not None else 1)
    done = f"{n['scored']} of {n['shards']} shard(s) scored here, {n['skipped']} found done"
    if args.worker is not None:
        return f"worker {args.worker} of {args.workers}: {done}; run without --worker to join them into {args.output}"
    return f"wrote {n['rows']} predictions to {args.output} ({done})"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "predict":
            print(_predict(args))
        elif args.command == "score":
            item = args.category if args.task == "QC" else args.title
            if item is None:
                raise ValueError(f"--task {args.task} scores a {'category path (--category)' if args.task == 'QC' else 'title (--title)'}")
            res = score_pair(args.task, args.model, args.query, item, args.language, args.threshold, args.trust_model)
            if args.json:
                print(json.dumps({"p_yes": round(res["p_yes"], 6), "threshold": res["threshold"],
                                  "prediction": res["prediction"]}))
            else:
                print(f"p_yes {res['p_yes']:.6f}\nthreshold {res['threshold']:.6f}\n"
                      f"prediction {res['prediction']} ({'relevant' if res['prediction'] else 'not relevant'})")
        else:
            print(evaluate_files(args.pred, args.gold).to_markdown(floatfmt=".4f"))
    except (DataFormatError, FileExistsError, FileNotFoundError, ValueError, PermissionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
