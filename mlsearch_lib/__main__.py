"""Prediction and evaluation outside the notebooks.

    python -m mlsearch_lib predict --task QC --model DIR --input FILE --output FILE [--threshold T]
    python -m mlsearch_lib evaluate --pred FILE --gold FILE

``predict`` writes JSON lines ``{"id", "prediction", "p_yes"}``: one line per input id, in
input order. It writes to ``FILE.partial`` and renames when complete, and refuses to replace
an existing output (or a leftover ``.partial``) unless ``--overwrite`` is given.
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


def predict_file(task: str, model_dir: Path, input_path: Path, output_path: Path,
                 threshold: float | None = None, overwrite: bool = False, trust: bool = False) -> pd.DataFrame:
    from mlsearch_lib.evaluation.thresholds import Thresholds
    from mlsearch_lib.models.loading import load_model

    partial = output_path.with_name(output_path.name + ".partial")
    if Path(output_path).resolve() == Path(input_path).resolve():
        raise ValueError(f"--output {output_path} is the input file: it would be overwritten (--overwrite or not)")
    if threshold is not None and not 0 < threshold < 1:
        raise ValueError(f"--threshold must be in (0, 1), got {threshold}")
    thr_file = Path(model_dir) / "thresholds.json"
    if threshold is None and not thr_file.is_file():
        raise FileNotFoundError(f"{thr_file}: the model has no tuned thresholds (notebook 05 writes them); "
                                "pass --threshold to decide at a fixed one")
    for path in (output_path, partial):
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    df = read_task_file(input_path, task=task)  # validates before any model is loaded
    model = load_model(model_dir, trust)
    if model.task != task:
        raise ValueError(f"{model_dir} is a {model.task} model, not {task}")
    p = model.predict_proba(df)
    if threshold is not None:
        thr = np.full(len(df), threshold)
    else:
        try:
            thr = Thresholds.from_dict(json.loads(thr_file.read_text(encoding="utf-8"))).for_rows(df["language"].to_numpy())
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{thr_file}: not a thresholds file ({type(exc).__name__}: {exc})") from None
    out = pd.DataFrame({"id": df["id"], "prediction": (p >= thr).astype(int), "p_yes": p})
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("w", encoding="utf-8") as fh:
        for rec in out.to_dict("records"):
            fh.write(json.dumps({"id": rec["id"], "prediction": int(rec["prediction"]), "p_yes": round(float(rec["p_yes"]), 6)}) + "\n")
    partial.replace(output_path)
    return out


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlsearch_lib", description="predict with a saved model, or evaluate predictions")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict")
    p.add_argument("--task", choices=["QC", "QI"], required=True)
    p.add_argument("--model", type=Path, required=True, help="a model directory saved by notebook 05 (one model, or a stack of them)")
    p.add_argument("--input", type=Path, required=True)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--threshold", type=float, help="default: the model's tuned thresholds.json, else 0.5")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.add_argument("--trust-model", action="store_true",
                   help="load pickled weights from outside this checkout's build dir (loading a pickle runs code)")
    e = sub.add_parser("evaluate")
    e.add_argument("--pred", type=Path, required=True)
    e.add_argument("--gold", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "predict":
            out = predict_file(args.task, args.model, args.input, args.output, args.threshold, args.overwrite,
                               args.trust_model)
            print(f"wrote {len(out)} predictions to {args.output}")
        else:
            print(evaluate_files(args.pred, args.gold).to_markdown(floatfmt=".4f"))
    except (DataFormatError, FileExistsError, FileNotFoundError, ValueError, PermissionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
