"""Scoring and training throughput of the two backbones, measured side by side in one run.

``python -m mlsearch_lib.bench scoring [--rows 256] [--quick]`` scores the same seeded sample of
QC training rows with gemma-3-270m three ways — (a) the seed's sampled generation, (b) p(yes)
from one forward pass, (c) the same with the shared prefix's KV cache — and with the e5
cross-encoder, then times a few training steps of each backbone and how time grows with rows
and batch size. Writes ``reports/bench/scoring.md`` (+ ``scoring.json``) and
``figures/bench_scaling.png``; prints the Markdown table.

``python -m mlsearch_lib.bench encoder [--rows 512]`` times the cross-encoder's top-stack training
and scoring in fp32 and in bf16 autocast (``encoder.bf16``) side by side: ``reports/bench/encoder.md``.

``python -m mlsearch_lib.bench gpu [--model ID] [--rows 512] [--random-weights --tokenizer DIR]``
(a CUDA machine only; elsewhere it exits with a message and writes nothing): the same three ways
and vLLM's (when the optional gpu extra is installed) on the GPU profile's model, LoRA training
throughput, and training's peak memory against the memory plan: :mod:`mlsearch_lib.bench_gpu`,
``reports/bench/gpu.md``.

Achieved GFLOP/s use the usual estimate 2 x non-embedding parameters x tokens processed
(padding included, attention's own FLOPs ignored; generation adds the full-vocabulary
projection of each generated position; training uses 4x for LoRA on a frozen base and 6x for
full fine-tuning), compared with this machine's fp32 matmul peak timed on 2048x2048 matrices.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from .hardware import describe
from .paths import data_file, ensure, figures_dir, reports_dir
from .profiles import EncoderConfig, LLMConfig, PromptConfig
from .prompts import PromptBuilder

SEED = 13
PROJECT_ROWS = (1_000, 4_000, 16_000)


# ------------------------------------------------------------------------------------ inputs


def bench_inputs(df_all: pd.DataFrame, rows: int, prompt: PromptConfig | None = None,
                 extra: int = 0) -> tuple[pd.DataFrame, PromptBuilder, pd.DataFrame]:
    """``rows`` benchmark rows, the book's own :class:`PromptBuilder` (default: the seed's layout,
    LT + HCT + ICL + CoT) fitted on the *other* rows, and ``extra`` more rows for warm-up.

    The in-context examples come from rows outside the sample, per language, exactly as a training
    fold supplies them: the benchmark scores the prompts the book trains and predicts with.
    """
    sample = df_all.sample(n=min(rows + extra, len(df_all)), random_state=SEED)
    builder = PromptBuilder("QC", prompt or PromptConfig(), SEED).fit(df_all.drop(index=sample.index))
    sample = sample.reset_index(drop=True)
    return sample.iloc[:rows].reset_index(drop=True), builder, sample.iloc[rows:].reset_index(drop=True)


# ------------------------------------------------------------------------------------ helpers


def matmul_peak_gflops(n: int = 2048, seconds: float = 1.5) -> float:
    """fp32 GFLOP/s of an ``n x n`` matmul loop: the machine's practical peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or reps < 3:
        a @ b
        reps += 1
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def _non_embedding_params(model: torch.nn.Module) -> int:
    embeds = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    return sum(p.numel() for p in model.parameters() if id(p) not in embeds)


def _timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[Any, float]:
    """``fn()``'s result and its best wall time over ``repeats`` runs: on a shared machine other
    work only ever slows a run down, so the fastest run is the least noisy estimate."""
    best = math.inf
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def _first_word(text: str) -> str:
    words = "".join(c if c.isalnum() else " " for c in text.lower()).split()
    return words[0] if words else ""


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else float("nan")


def _fit_throughput(model: Any, inputs: list, labels: np.ndarray, steps: int, batch_size: int) -> dict[str, float]:
    """Rows/s and tokens/s of ``steps`` optimiser steps after one warm-up step (Trainer start-up included)."""
    n = min(len(inputs), steps * batch_size)
    update = {"batch_size": batch_size} | ({"grad_accum": 1} if hasattr(model.cfg, "grad_accum") else {})
    cfg, model.cfg = model.cfg, model.cfg.model_copy(update=update)  # one batch per step: rows = steps x batch
    try:
        model.fit(inputs[:batch_size], labels[:batch_size], max_steps=1)  # warm-up: first-step allocations
        log, secs = _timed(lambda: model.fit(inputs[:n], labels[:n], max_steps=steps))
    finally:
        model.cfg = cfg
    rows = steps * batch_size
    if hasattr(model, "answer_ids"):
        tokens = sum(len(p) + len(b) for p, b in model._encode(inputs[:n]))
    else:
        tokens = sum(len(e["input_ids"]) for e in model._encode(inputs[:n]))
    tokens = tokens * rows / n  # rows are revisited when n < steps * batch_size
    return {"seconds": secs, "steps": steps, "batch_size": batch_size, "rows": rows,
            "rows_per_s": rows / secs, "tokens_per_s": tokens / secs, "tokens": tokens,
            "final_loss": log["history"][-1].get("loss", float("nan"))}


# ---------------------------------------------------------------------------------- benchmark


def run_scoring(rows: int = 256, quick: bool = False, repeats: int = 2) -> dict[str, Any]:
    from .causal_lm import CausalLMScorer
    from .data import read_task_file
    from .encoder import CrossEncoder

    torch.manual_seed(SEED)
    df_all = read_task_file(data_file("QC/train_QC.txt"), task="QC")
    if quick:
        rows, repeats = min(rows, 24), 1
    df, builder, _ = bench_inputs(df_all, rows)
    labels = df["label"].to_numpy().astype(int)
    prompts, pairs = builder.prompts(df), builder.pairs(df)
    print(f"benchmark on {len(df)} QC rows, {torch.get_num_threads()} torch threads", flush=True)

    peak = matmul_peak_gflops(seconds=0.5 if quick else 1.5)
    llm_cfg, enc_cfg = LLMConfig(), EncoderConfig()
    (llm, llm_load) = _timed(lambda: CausalLMScorer(llm_cfg, SEED))
    (enc, enc_load) = _timed(lambda: CrossEncoder(enc_cfg, SEED))
    p_llm = _non_embedding_params(llm.model)
    p_enc = _non_embedding_params(enc.model)
    vocab_flops = 2 * llm.model.config.vocab_size * llm.model.config.hidden_size
    prefix_tokens = len(llm._prefix(prompts[0].prefix))
    body_tokens = float(np.mean([len(b) for _, b in llm._encode(prompts)]))

    res: dict[str, Any] = {"rows": len(df), "quick": quick, "repeats": repeats, "peak_gflops": peak, "llm_load_s": llm_load,
                           "encoder_load_s": enc_load, "llm_non_embedding_params": p_llm,
                           "encoder_non_embedding_params": p_enc, "prefix_tokens": prefix_tokens,
                           "mean_body_tokens": body_tokens, "methods": {}}

    def record(name: str, secs: float, tokens: float, flops: float, auc: float | None, extra: dict | None = None):
        res["methods"][name] = {"seconds": secs, "rows_per_s": len(df) / secs, "tokens": tokens,
                                "gflops": flops / secs / 1e9, "peak_share": flops / secs / 1e9 / peak,
                                "auc": auc, **(extra or {})}
        print(f"  {name}: {len(df) / secs:.2f} rows/s", flush=True)

    # (a) the seed: sampled generation of up to 5 tokens, row = 1 iff the text is "yes"
    answers, secs = _timed(lambda: llm.generate_answers(prompts, max_new_tokens=5, temperature=0.15), repeats)
    gen_tokens, new_tokens = llm.last_score_stats["tokens"], llm.last_score_stats["new_tokens"]
    pred = np.array([a.strip() == "yes" for a in answers], dtype=float)
    lenient = np.array([_first_word(a) == "yes" for a in answers], dtype=float)  # "- Yes\n..." counts
    record("(a) sampled generation", secs, gen_tokens, 2 * p_llm * gen_tokens + vocab_flops * new_tokens,
           _auc(labels, pred), {"share_exact_yes": float(pred.mean()),
                                "share_parsed": float(np.mean([a.strip() in {"yes", "no"} for a in answers])),
                                "share_lenient_yes": float(lenient.mean()), "auc_lenient": _auc(labels, lenient),
                                "answers_sample": answers[:5]})
    # (b) one forward pass, p(yes) from the two answer-token logits
    p_b, secs = _timed(lambda: llm.predict_proba(prompts, use_prefix_cache=False), repeats)
    tok = llm.last_score_stats["tokens"]
    record("(b) one pass p(yes)", secs, tok, 2 * p_llm * tok, _auc(labels, p_b))
    # (c) the same with the shared prefix encoded once and its KV cache copied per batch
    p_c, secs = _timed(lambda: llm.predict_proba(prompts, use_prefix_cache=True), repeats)
    tok = llm.last_score_stats["tokens"]
    record("(c) one pass + prefix KV cache", secs, tok, 2 * p_llm * tok, _auc(labels, p_c))
    res["max_abs_diff_b_c"] = float(np.abs(p_b - p_c).max())
    # (d) the e5 cross-encoder (untrained head: throughput only)
    _, secs = _timed(lambda: enc.predict_proba(pairs), repeats)
    tok = enc.last_score_stats["tokens"]
    record("(d) e5-small cross-encoder", secs, tok, 2 * p_enc * tok, None)

    # -- batch size ------------------------------------------------------------------------
    sub_n = 8 if quick else 32
    sweep = (1, 4, 8) if quick else (1, 4, 16, 32)
    res["batch_sweep"] = {"rows": sub_n, "scoring": {}, "training": {}}
    for bs in sweep:
        for name, fn in (("(b) one pass", lambda: llm.predict_proba(prompts[:sub_n], False, bs, progress=False)),
                         ("(c) prefix cache", lambda: llm.predict_proba(prompts[:sub_n], True, bs, progress=False)),
                         ("(d) e5", lambda: enc.predict_proba(pairs[:sub_n], bs, progress=False))):
            _, secs = _timed(fn)
            res["batch_sweep"]["scoring"].setdefault(name, {})[bs] = sub_n / secs
    print("  batch-size sweep done", flush=True)

    # -- growth with rows: a second, smaller measured size; a linear fit projects larger ones --
    small = max(4, len(df) // 4)
    growth: dict[str, dict[str, Any]] = {}
    for name, fn in (("(b) one pass p(yes)", lambda n: llm.predict_proba(prompts[:n], False, progress=False)),
                     ("(c) one pass + prefix KV cache", lambda n: llm.predict_proba(prompts[:n], True, progress=False)),
                     ("(d) e5-small cross-encoder", lambda n: enc.predict_proba(pairs[:n], progress=False))):
        _, secs = _timed(lambda: fn(small))
        growth[name] = {"measured": {small: secs, len(df): res["methods"][name]["seconds"]}}
    growth["(a) sampled generation"] = {"measured": {len(df): res["methods"]["(a) sampled generation"]["seconds"]}}
    if not quick:  # e5 is cheap enough to measure at 1k rows outright
        more = df_all.sample(n=min(1000, len(df_all)), random_state=SEED + 1)
        _, secs = _timed(lambda: enc.predict_proba(builder.pairs(more), progress=False))
        growth["(d) e5-small cross-encoder"]["measured"][len(more)] = secs
    for name, g in growth.items():  # time = a + b * rows, fitted on the measured sizes
        ns = np.array(sorted(g["measured"]), dtype=float)
        ts = np.array([g["measured"][int(n)] for n in ns])
        slope, icpt = (np.polyfit(ns, ts, 1) if len(ns) > 1 else (ts[0] / ns[0], 0.0))
        slope = slope if slope > 0 else ts[-1] / ns[-1]
        g["projected"] = {n: float(max(icpt, 0.0) + slope * n) for n in PROJECT_ROWS if n not in g["measured"]}
    res["growth"] = growth

    # -- training throughput (wraps gemma in LoRA, so after every scoring measurement) -----
    steps = 1 if quick else 3
    train_llm = {bs: _fit_throughput(llm, prompts, labels, steps, bs) for bs in ((2, 4) if quick else (2, 8))}
    train_enc = {bs: _fit_throughput(enc, pairs, labels, steps, bs) for bs in ((4, 8) if quick else (8, 32))}
    for bs, t in train_llm.items():
        t["gflops"] = 4 * p_llm * t["tokens"] / t["seconds"] / 1e9  # LoRA: frozen weights get no gradient
        res["batch_sweep"]["training"].setdefault("gemma LoRA", {})[bs] = t["rows_per_s"]
    for bs, t in train_enc.items():
        t["gflops"] = 6 * p_enc * t["tokens"] / t["seconds"] / 1e9  # full fine-tuning (embeddings frozen)
        res["batch_sweep"]["training"].setdefault("e5 full FT", {})[bs] = t["rows_per_s"]
    # the cpu profile's cross-encoder: top 2 layers trained, the 10 below run once per row (timed here)
    k = 2
    top = CrossEncoder(EncoderConfig(train_top_layers=k), SEED)
    n_layers = len(top.model.base_model.encoder.layer)
    train_top = {bs: _fit_throughput(top, pairs, labels, steps, bs) for bs in ((4, 8) if quick else (8, 32))}
    for bs, t in train_top.items():
        flops_per_token = (2 * (n_layers - k) + 6 * k) / n_layers * p_enc  # lower forward + top fwd/bwd
        t["gflops"] = flops_per_token * t["tokens"] / t["seconds"] / 1e9
        res["batch_sweep"]["training"].setdefault("e5 top 2 layers", {})[bs] = t["rows_per_s"]
    res["training"] = {"gemma LoRA": train_llm[max(train_llm)], "e5 full FT": train_enc[max(train_enc)],
                       "e5 top 2 layers": train_top[max(train_top)]}
    print("  training throughput done", flush=True)

    for name, t in res["training"].items():  # one epoch = rows / measured training rows/s
        growth[f"train 1 epoch: {name}"] = {"measured": {}, "projected": {n: n / t["rows_per_s"] for n in PROJECT_ROWS}}
    return res


# ------------------------------------------------------------------------------------ reports


def _fmt_s(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else (f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h")


def markdown(res: dict[str, Any]) -> str:
    base = res["methods"]["(a) sampled generation"]["rows_per_s"]
    lines = ["| method | rows/s | speed-up vs (a) | tokens processed | GFLOP/s | share of peak | ROC-AUC (zero-shot) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, m in res["methods"].items():
        auc = "—" if m["auc"] is None else f"{m['auc']:.3f}"
        lines.append(f"| {name} | {m['rows_per_s']:.2f} | {m['rows_per_s'] / base:.1f}x | {m['tokens']:,.0f} | "
                     f"{m['gflops']:.1f} | {m['peak_share']:.0%} | {auc} |")
    lines += ["", "| training (LoRA for gemma, embeddings frozen for e5; top 2: lower layers run once per row) "
              "| batch | rows/s | tokens/s | GFLOP/s |",
              "|---|---:|---:|---:|---:|"]
    for name, t in res["training"].items():
        lines.append(f"| {name} | {t['batch_size']} | {t['rows_per_s']:.2f} | {t['tokens_per_s']:.0f} | {t['gflops']:.1f} |")
    return "\n".join(lines)


def growth_table(res: dict[str, Any]) -> str:
    sizes = sorted({n for g in res["growth"].values() for part in ("measured", "projected") for n in g[part]})
    lines = ["| | " + " | ".join(f"{n:,} rows" for n in sizes) + " |", "|---|" + "---:|" * len(sizes)]
    for name, g in res["growth"].items():
        cells = []
        for n in sizes:
            if n in g["measured"]:
                cells.append(_fmt_s(g["measured"][n]))
            elif n in g["projected"]:
                cells.append(f"{_fmt_s(g['projected'][n])} (projected)")
            else:
                cells.append("")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(res: dict[str, Any], path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (name, g) in enumerate(res["growth"].items()):
        color = f"C{i}"
        m = sorted(g["measured"].items())
        if m:
            ax1.plot(*zip(*m), "o-", color=color, label=name)
        p = sorted(g["projected"].items())
        if p:
            start = [m[-1]] if m else []
            ax1.plot(*zip(*(start + p)), "--", color=color, alpha=0.7, label=None if m else f"{name} (projected)")
    ax1.set(xscale="log", yscale="log", xlabel="rows", ylabel="seconds",
            title="Time vs rows (solid: measured, dashed: projected)")
    ax1.legend(fontsize=7)
    for i, (kind, curves) in enumerate(res["batch_sweep"].items()):
        if kind == "rows":
            continue
        for j, (name, pts) in enumerate(curves.items()):
            ax2.plot(*zip(*sorted(pts.items())), "o-" if kind == "scoring" else "s--",
                     label=f"{kind}: {name}")
    sizes = sorted({bs for curves in (res["batch_sweep"]["scoring"], res["batch_sweep"]["training"])
                    for pts in curves.values() for bs in pts})
    ax2.set_xscale("log")
    ax2.set_xticks(sizes, [str(b) for b in sizes])
    ax2.minorticks_off()
    ax2.set(yscale="log", xlabel="batch size", ylabel="rows/s",
            title=f"Throughput vs batch size ({res['batch_sweep']['rows']} rows scored)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(res: dict[str, Any]) -> str:
    device = describe()
    fig_path = ensure(figures_dir()) / "bench_scaling.png"
    figure(res, fig_path)
    out = ensure(reports_dir() / "bench")
    gen = res["methods"]["(a) sampled generation"]
    head = [
        "# Scoring and training throughput",
        "",
        f"- date: {dt.date.today().isoformat()}; device: {device}; "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads",
        f"- {res['rows']} QC training rows (seeded sample){' — quick run' if res['quick'] else ''}; "
        f"shared prompt prefix {res['prefix_tokens']} tokens, body {res['mean_body_tokens']:.0f} tokens on average",
        f"- fp32 matmul peak (2048x2048): {res['peak_gflops']:.0f} GFLOP/s; GFLOP/s estimated as "
        "2 x non-embedding parameters x tokens processed (padding included, attention ignored)",
        f"- scoring times (a)-(d): the best of {res.get('repeats', 1)} runs each (a shared machine only slows a run)",
        f"- gemma-3-270m load {res['llm_load_s']:.1f} s; e5-small load {res['encoder_load_s']:.1f} s",
        f"- max |p(b) - p(c)| = {res['max_abs_diff_b_c']:.2e}",
        f"- (a) the seed's rule (row = 1 iff the text is exactly \"yes\"): {gen['share_exact_yes']:.0%} yes, "
        f"{gen['share_parsed']:.0%} of answers exactly \"yes\"/\"no\"; read leniently (first word, any case) "
        f"{gen['share_lenient_yes']:.0%} yes, ROC-AUC {gen['auc_lenient']:.3f}",
        "",
        "",
    ]
    text = "\n".join(head) + markdown(res) + "\n\n## Growth with rows\n\n" + growth_table(res) + \
        f"\n\n![scaling](../../figures/{fig_path.name})\n"
    (out / "scoring.md").write_text(text, encoding="utf-8")
    (out / "scoring.json").write_text(json.dumps(res, indent=2, default=str) + "\n", encoding="utf-8")
    return text


# ------------------------------------------------------------------- encoder: fp32 vs bf16


def run_encoder(rows: int = 512, steps: int = 20, layers: tuple[int, ...] = (2, 4), repeats: int = 2,
                quick: bool = False) -> dict[str, Any]:
    """Training and scoring rows/s of the cpu profile's cross-encoder (top ``k`` layers on cached
    lower layers, mean pooling, QC's plain-path pairs) in fp32 and in bf16 autocast, side by side.

    The frozen lower layers are cached before timing (they run once per row in either mode), so
    the rows compare what ``encoder.bf16`` changes: the trained top stack. Best of ``repeats``.
    """
    from .data import read_task_file
    from .encoder import CrossEncoder

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
            train = max((_fit_throughput(enc, pairs, labels, steps, batch) for _ in range(repeats)),
                        key=lambda t: t["rows_per_s"])
            p, secs = _timed(lambda: enc.predict_proba(pairs, progress=False), repeats)  # noqa: B023
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
    device's last one, since whether bf16 pays depends on the CPU (:mod:`mlsearch_lib.hardware`)."""
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlsearch_lib.bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sc = sub.add_parser("scoring", help="scoring and training throughput of gemma-3-270m and e5-small")
    sc.add_argument("--rows", type=int, default=256)
    sc.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test of the benchmark)")
    sc.add_argument("--repeats", type=int, default=2, help="scoring runs per method; the best is kept")
    en = sub.add_parser("encoder", help="the cross-encoder's top-stack training and scoring, fp32 vs bf16")
    en.add_argument("--rows", type=int, default=512)
    en.add_argument("--steps", type=int, default=20)
    en.add_argument("--quick", action="store_true")
    gp = sub.add_parser("gpu", help="GPU scoring (and vLLM's, when installed), LoRA training, memory vs plan; CUDA")
    gp.add_argument("--profile", default="gpu", help="llm settings to use (default: gpu)")
    gp.add_argument("--model", help="another model than the profile's: a hub id or a local directory")
    gp.add_argument("--rows", type=int, default=512)
    gp.add_argument("--quick", action="store_true")
    gp.add_argument("--random-weights", action="store_true",
                    help="the architecture with random weights: timings and memory only (no ROC-AUC)")
    gp.add_argument("--tokenizer", help="with --random-weights: a folder of tokenizer files for the model")
    gp.add_argument("--tensor-parallel-size", type=int, default=1)
    gp.add_argument("--gpu-memory-utilization", type=float, default=0.45)
    args = parser.parse_args(argv)
    if args.command == "gpu":
        from .bench_gpu import gpu_unavailable, run_gpu, write_gpu_report

        why = gpu_unavailable()
        if why:
            print(f"bench gpu: {why}", file=sys.stderr)
            sys.exit(2)
        res = run_gpu(args.profile, args.model, args.rows, args.quick, args.tensor_parallel_size,
                      args.gpu_memory_utilization, random_weights=args.random_weights, tokenizer=args.tokenizer)
        print(write_gpu_report(res))
        return
    if args.command == "encoder":
        print(write_encoder_report(run_encoder(args.rows, args.steps, quick=args.quick)))
        return
    res = run_scoring(args.rows, args.quick, args.repeats)
    print(write_report(res))


if __name__ == "__main__":
    main()
