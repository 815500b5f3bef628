"""e5's trained top layers in fp32 and in bf16 autocast, side by side: the cross-encoder's top
stack (``encoder.bf16``; ``python -m mlsearch_lib.bench encoder`` writes ``reports/bench/encoder.md``)
and the contrastive tower of ``hybrid_ctr`` (``contrastive.bf16``; ``python -m mlsearch_lib.bench
contrastive`` writes ``reports/bench/contrastive.md``)."""


from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
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
    runs = _with_this_device(ensure(reports_dir() / "bench") / "encoder.json", res)
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
    (reports_dir() / "bench" / "encoder.md").write_text(text, encoding="utf-8")
    return text


def _with_this_device(path: Path, res: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs saved in ``path`` with this device's replaced by ``res`` (stamped with device, date,
    torch and threads), saved back: whether bf16 pays depends on the machine, so each keeps its own."""
    res = {"device": describe(), "date": dt.date.today().isoformat(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), **res}
    previous = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    runs = [r for r in previous if r["device"] != res["device"]] + [res]
    path.write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")
    return runs


# ------------------------------------------------------------------- contrastive tower: fp32 vs bf16


def run_contrastive(rows: int = 4000, repeats: int = 2, quick: bool = False) -> dict[str, Any]:
    """One :class:`~mlsearch_lib.features.contrastive.ContrastiveTower` fit (cpu's settings: top 2
    layers, 2 epochs, batch 64) on ``rows`` seeded QC rows, in fp32 and in bf16 autocast,
    alternating, best of ``repeats``; the frozen lower layers are cached before timing. The last
    column: how far bf16's tuned cosines of the rows' pairs land from fp32's."""
    from mlsearch_lib.config.profiles import ContrastiveConfig
    from mlsearch_lib.data.records import read_task_file
    from mlsearch_lib.features.contrastive import ContrastiveTower, CrossFitTowers

    if quick:
        rows, repeats = 64, 1
    df = read_task_file(data_file("QC/train_QC.txt"), task="QC").sample(rows, random_state=SEED)
    qt, ct = CrossFitTowers.texts(list(zip(df["origin_query"], df["category_path"])))
    cfg = ContrastiveConfig(**({"train_top_layers": 1, "epochs": 1.0, "batch_size": 8} if quick else {}))
    best: dict[bool, tuple[float, dict, np.ndarray]] = {}
    for _ in range(repeats):
        for bf16 in (False, True):
            tower = ContrastiveTower(EncoderConfig().model, 64, seed=SEED, **cfg.model_dump(exclude={"bf16"}), bf16=bf16)
            tower._lower([*qt, *ct])
            log, secs = timed(lambda: tower.fit(qt, ct, df["label"].to_numpy()))  # noqa: B023
            if bf16 not in best or secs < best[bf16][0]:
                best[bf16] = secs, log, (tower.embed(qt) * tower.embed(ct)).sum(1)
    runs = [{"precision": "bf16" if b else "fp32", "seconds": secs, "steps": log["steps"],
             "loss_last": log["loss_last"], "max_cos_diff": float(np.abs(cos - best[False][2]).max())}
            for b, (secs, log, cos) in best.items()]
    return {"rows": len(df), "quick": quick, "repeats": repeats, "settings": cfg.model_dump(exclude={"bf16"}),
            "runs": runs}


def write_contrastive_report(res: dict[str, Any]) -> str:
    """``reports/bench/contrastive.md`` (+ ``.json``): one section per device, as the encoder's."""
    runs = _with_this_device(ensure(reports_dir() / "bench") / "contrastive.json", res)
    sections = []
    for r in runs:
        ref = next(x for x in r["runs"] if x["precision"] == "fp32")
        sections += [
            f"## {r['device']}", "",
            f"- date: {r['date']}; torch {r['torch']} with {r['threads']} threads{' — quick run' if r['quick'] else ''}",
            f"- one tower fit on {r['rows']} seeded QC rows ({r['settings']}); frozen lower layers cached first; "
            f"best of {r['repeats']}, precisions alternating", "",
            "| precision | fit seconds | × fp32 | steps | last loss | max abs cosine − fp32's |",
            "|---|---:|---:|---:|---:|---:|",
            *(f"| {x['precision']} | {x['seconds']:.1f} | {x['seconds'] / ref['seconds']:.2f}x | {x['steps']} | "
              f"{x['loss_last']:.3f} | {x['max_cos_diff']:.4f} |" for x in r["runs"]), ""]
    text = "\n".join(["# Contrastive tower (`hybrid_ctr`): fp32 and bf16 autocast side by side", "",
                      "Both precisions start from the same weights and see the same batches; the last column "
                      "is how far bf16's tuned cosines of the rows' pairs land from fp32's.", "", *sections])
    (reports_dir() / "bench" / "contrastive.md").write_text(text, encoding="utf-8")
    return text
