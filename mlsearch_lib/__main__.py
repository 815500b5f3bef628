"""Prediction, scoring and evaluation outside the notebooks.

    python -m mlsearch_lib predict --task QC --model DIR --input FILE --output FILE [--threshold T]
    python -m mlsearch_lib score --task QC --model DIR --query TEXT --category PATH [--language xx]
    python -m mlsearch_lib score --task QI --model DIR --query TEXT --title TEXT [--threshold T]
    python -m mlsearch_lib evaluate --pred FILE --gold FILE

Input files are the official schema: JSON lines (or CSV) with ``id``, ``language``,
``origin_query`` and ``category_path`` (QC) or ``item_title`` (QI), plus ``label`` (0/1) in a
gold file. ``predict`` writes JSON lines ``{"id", "prediction", "p_yes"}``: one line per input
id, in input order. It writes to ``FILE.partial`` and renames when complete, and refuses to
replace an existing output (or a leftover ``.partial``) unless ``--overwrite`` is given.
``score`` scores one pair, read exactly as ``predict`` reads a line of its input, and prints
its p(yes) and the decision at the model's threshold.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mlsearch_lib.data.records import DataFormatError, iter_jsonl, parse_id, read_task_file
from mlsearch_lib.evaluation.metrics import by_language


def _check_threshold(model_dir: Path, threshold: float | None) -> Path:
    """``model_dir/thresholds.json``, which must exist unless a fixed ``threshold`` in (0, 1) is given."""
    if threshold is not None and not 0 < threshold < 1:
        raise ValueError(f"--threshold must be in (0, 1), got {threshold}")
    thr_file = Path(model_dir) / "thresholds.json"
    if threshold is None and not thr_file.is_file():
        raise FileNotFoundError(f"{thr_file}: the model has no tuned thresholds (notebook 05 and "
                                "`python -m mlsearch_lib.models.train --kind stacked` write them); "
                                "pass --threshold to decide at a fixed one")
    return thr_file


def _thresholds(thr_file: Path, threshold: float | None, languages: np.ndarray) -> np.ndarray:
    """Each row's threshold: ``threshold`` for all, else the saved one of its language (or the global one)."""
    from mlsearch_lib.evaluation.thresholds import Thresholds

    if threshold is not None:
        return np.full(len(languages), threshold)
    try:
        return Thresholds.from_dict(json.loads(thr_file.read_text(encoding="utf-8"))).for_rows(languages)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{thr_file}: not a thresholds file ({type(exc).__name__}: {exc})") from None


def _load(task: str, model_dir: Path, trust: bool):
    from mlsearch_lib.models.loading import load_model

    model = load_model(model_dir, trust)
    if model.task != task:
        raise ValueError(f"{model_dir} is a {model.task} model, not {task}")
    return model


def predict_file(task: str, model_dir: Path, input_path: Path, output_path: Path,
                 threshold: float | None = None, overwrite: bool = False, trust: bool = False) -> pd.DataFrame:
    partial = output_path.with_name(output_path.name + ".partial")
    if Path(output_path).resolve() == Path(input_path).resolve():
        raise ValueError(f"--output {output_path} is the input file: it would be overwritten (--overwrite or not)")
    thr_file = _check_threshold(model_dir, threshold)
    for path in (output_path, partial):
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    df = read_task_file(input_path, task=task)  # validates before any model is loaded
    model = _load(task, model_dir, trust)
    p = model.predict_proba(df)
    thr = _thresholds(thr_file, threshold, df["language"].to_numpy())
    out = pd.DataFrame({"id": df["id"], "prediction": (p >= thr).astype(int), "p_yes": p})
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("w", encoding="utf-8") as fh:
        for rec in out.to_dict("records"):
            fh.write(json.dumps({"id": rec["id"], "prediction": int(rec["prediction"]), "p_yes": round(float(rec["p_yes"]), 6)}) + "\n")
    partial.replace(output_path)
    return out


def score_pair(task: str, model_dir: Path, query: str, item: str, language: str = "en",
               threshold: float | None = None, trust: bool = False) -> dict:
    """One (query, category path or item title) pair: ``{"p_yes", "threshold", "prediction"}``.

    The pair goes through the same reader as a line of ``predict``'s input (a one-line file), so
    its p(yes) is the one ``predict`` writes for that line."""
    import tempfile

    from mlsearch_lib.data.records import ITEM_FIELD

    thr_file = _check_threshold(model_dir, threshold)
    record = {"id": 1, "language": language, "origin_query": query, ITEM_FIELD[task]: item}
    with tempfile.TemporaryDirectory(prefix="mlsearch-score-") as tmp:
        path = Path(tmp) / "pair.jsonl"
        path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
        df = read_task_file(path, task=task)
    model = _load(task, model_dir, trust)
    p = float(model.predict_proba(df)[0])
    thr = float(_thresholds(thr_file, threshold, df["language"].to_numpy())[0])
    return {"p_yes": p, "threshold": thr, "prediction": int(p >= thr)}


def read_predictions(path: Path) -> pd.DataFrame:
    """A submission as the official checker reads it: every line an object with an ``id`` (an
    integer or a string, as the gold file writes it), a 0/1 ``prediction`` and, optionally, a
    ``p_yes`` in [0, 1]; ids once each. Every problem is ``file:line: field: why``."""
    rows, first = [], {}
    for lineno, rec in iter_jsonl(Path(path)):
        for field in ("id", "prediction"):
            if field not in rec:
                raise DataFormatError(path, lineno, field, "missing")
        try:
            rid = parse_id(rec["id"])
        except ValueError:
            raise DataFormatError(path, lineno, "id", f"not an id as the gold file writes them: {rec['id']!r}") from None
        if rid in first:
            raise DataFormatError(path, lineno, "id", f"duplicate id {rid!r} (first on line {first[rid]})")
        first[rid] = lineno
        pred = rec["prediction"]
        if isinstance(pred, bool) or pred not in (0, 1) or isinstance(pred, float) and not pred.is_integer():
            raise DataFormatError(path, lineno, "prediction", f"must be 0 or 1, got {pred!r}")
        row = {"id": rid, "prediction": int(pred), "line": lineno}
        if "p_yes" in rec:
            p = rec["p_yes"]
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or not 0 <= p <= 1:
                raise DataFormatError(path, lineno, "p_yes", f"must be a number in [0, 1], got {p!r}")
            row["p_yes"] = float(p)
        rows.append(row)
    if not rows:
        raise DataFormatError(path, 0, None, "no predictions")
    if len({"p_yes" in r for r in rows}) > 1:
        line = next(r["line"] for r in rows if "p_yes" not in r)
        raise DataFormatError(path, line, "p_yes", "present on some lines and absent on others")
    return pd.DataFrame(rows)


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
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "predict":
            out = predict_file(args.task, args.model, args.input, args.output, args.threshold, args.overwrite,
                               args.trust_model)
            print(f"wrote {len(out)} predictions to {args.output}")
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
