"""The cross-encoder's top-stack training and scoring in fp32 and in bf16 autocast
(``encoder.bf16``), side by side: ``python -m mlsearch_lib.bench encoder`` writes
``reports/bench/encoder.md``."""


from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pandas as pd
import torch

from mlsearch_lib.bench.common import SEED, bench_inputs, fit_throughput, timed
from mlsearch_lib.config.hardware import describe
from mlsearch_lib.config.paths import data_file, ensure, reports_dir
from mlsearch_lib.config.profiles import EncoderConfig, PromptConfig

# ------------------------------------------------------------------- encoder: fp32 vs bf16


def run_encoder(rows: int = 512, steps: int = 20, layers: tuple[int, ...] = (2, 4), repeats: int = 2,
                quick: bool = False) -> dict[str, Any]:
    """Training and scoring rows/s of the cpu profile's cross-encoder (top ``k`` layers on cached
    lower layers, mean pooling, QC's plain-path pairs) in fp32 and in bf16 autocast, side by side.

    The frozen lower layers are cached before timing (they run once per row in either mode), so
    the rows compare what ``encoder.bf16`` changes: the trained top stack. Best of ``repeats``.
    """
    from mlsearch_lib.data.records import read_task_file
    from mlsearch_lib.models.encoder import CrossEncoder

    if quick:
        rows, steps, layers, repeats = 16, 2, (1,), 1
    df, builder, _ = bench_inputs(read_task_file(data_file("QC/train_QC.txt"), task="QC"), rows,
                                  PromptConfig(hct=False))
    pairs, labels = builder.pairs(df), df["label"].to_numpy().astype(int)
    batch = 4 if quick else 32
    res: dict[str, Any] = {"rows": len(df), "steps": steps, "batch_size": batch, "quick": quick,
                           "repeats": repeats, "runs": []}
    for k in layers:
        for bf16 in (False, True):
            enc = CrossEncoder(EncoderConfig(train_top_layers=k, pooling="mean", bf16=bf16, batch_size=batch), SEED)
            enc._lower_states(pairs, progress=False)
            train = max((fit_throughput(enc, pairs, labels, steps, batch) for _ in range(repeats)),
                        key=lambda t: t["rows_per_s"])
            p, secs = timed(lambda: enc.predict_proba(pairs, progress=False), repeats)  # noqa: B023
            res["runs"].append({"top_layers": k, "precision": "bf16" if bf16 else "fp32",
                                "train_rows_per_s": train["rows_per_s"], "score_rows_per_s": len(pairs) / secs,
                                "final_loss": train["final_loss"], "p_yes": p.tolist()})
            print(f"  top {k} {'bf16' if bf16 else 'fp32'} done", flush=True)
    return res


def encoder_markdown(res: dict[str, Any]) -> str:
    runs = pd.DataFrame(res["runs"])
    lines = ["| top layers | precision | train rows/s | × fp32 | score rows/s | × fp32 | max abs p(yes) − fp32's |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for _, r in runs.iterrows():
        ref = runs[(runs.top_layers == r.top_layers) & (runs.precision == "fp32")].iloc[0]
        diff = float(np.max(np.abs(np.array(r.p_yes) - np.array(ref.p_yes))))
        lines.append(f"| {r.top_layers} | {r.precision} | {r.train_rows_per_s:.1f} | "
                     f"{r.train_rows_per_s / ref.train_rows_per_s:.2f}x | {r.score_rows_per_s:.0f} | "
                     f"{r.score_rows_per_s / ref.score_rows_per_s:.2f}x | {diff:.3f} |")
    return "\n".join(lines)


def write_encoder_report(res: dict[str, Any]) -> str:
    """``reports/bench/encoder.md`` (+ ``.json``): one section per device, this run replacing its
    device's last one, since whether bf16 pays depends on the CPU (:mod:`mlsearch_lib.config.hardware`)."""
    res = {"device": describe(), "date": dt.date.today().isoformat(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), **res}
    out = ensure(reports_dir() / "bench")
    path = out / "encoder.json"
    previous = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    runs = [r for r in previous if r["device"] != res["device"]] + [res]
    sections = [
        "\n".join([
            f"## {r['device']}", "",
            f"- date: {r['date']}; torch {r['torch']} with {r['threads']} threads{' — quick run' if r['quick'] else ''}",
            f"- {r['rows']} QC training rows (seeded sample, plain category path); training: {r['steps']} "
            f"steps of {r['batch_size']} rows after one warm-up step; scoring: all rows. Best of {r['repeats']} runs",
            "", encoder_markdown(r), ""])
        for r in runs]
    text = "\n".join([
        "# Cross-encoder: fp32 and bf16 autocast side by side", "",
        "The frozen lower layers are cached first, as in the book; both precisions train from the same "
        "initial weights, so the last column is bf16's rounding after the same steps. One section per "
        "device: bf16 autocast pays only where the hardware computes it (`bf16: auto`).", "", *sections])
    (out / "encoder.md").write_text(text, encoding="utf-8")
    path.write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")
    return text
