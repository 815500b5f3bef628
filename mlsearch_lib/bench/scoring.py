"""Scoring and training throughput of the two backbones, measured side by side in one run.

``python -m mlsearch_lib.bench scoring [--rows 256] [--quick]`` scores the same seeded sample of
QC training rows with gemma-3-270m three ways — (a) the seed's sampled generation, (b) p(yes)
from one forward pass, (c) the same with the shared prefix's KV cache — and with the e5
cross-encoder, then times a few training steps of each backbone and how time grows with rows
and batch size. Writes ``reports/bench/scoring.md`` (+ ``scoring.json``) and
``figures/bench_scaling.png``; prints the Markdown table.

Achieved GFLOP/s use the usual estimate 2 x non-embedding parameters x tokens processed
(padding included, attention's own FLOPs ignored; generation adds the full-vocabulary
projection of each generated position; training uses 4x for LoRA on a frozen base and 6x for
full fine-tuning), compared with this machine's fp32 matmul peak timed on 2048x2048 matrices.
"""


from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import torch

from mlsearch_lib.bench.common import (
    PROJECT_ROWS,
    SEED,
    auc,
    bench_inputs,
    fit_throughput,
    matmul_peak_gflops,
    non_embedding_params,
    timed,
)
from mlsearch_lib.config.hardware import describe
from mlsearch_lib.config.paths import data_file, ensure, figures_dir, reports_dir
from mlsearch_lib.config.profiles import EncoderConfig, LLMConfig


def _first_word(text: str) -> str:
    words = "".join(c if c.isalnum() else " " for c in text.lower()).split()
    return words[0] if words else ""


# ---------------------------------------------------------------------------------- benchmark


def run_scoring(rows: int = 256, quick: bool = False, repeats: int = 2) -> dict[str, Any]:
    from mlsearch_lib.data.records import read_task_file
    from mlsearch_lib.models.causal_lm import CausalLMScorer
    from mlsearch_lib.models.encoder import CrossEncoder

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
    (llm, llm_load) = timed(lambda: CausalLMScorer(llm_cfg, SEED))
    (enc, enc_load) = timed(lambda: CrossEncoder(enc_cfg, SEED))
    p_llm = non_embedding_params(llm.model)
    p_enc = non_embedding_params(enc.model)
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
    answers, secs = timed(lambda: llm.generate_answers(prompts, max_new_tokens=5, temperature=0.15), repeats)
    gen_tokens, new_tokens = llm.last_score_stats["tokens"], llm.last_score_stats["new_tokens"]
    pred = np.array([a.strip() == "yes" for a in answers], dtype=float)
    lenient = np.array([_first_word(a) == "yes" for a in answers], dtype=float)  # "- Yes\n..." counts
    record("(a) sampled generation", secs, gen_tokens, 2 * p_llm * gen_tokens + vocab_flops * new_tokens,
           auc(labels, pred), {"share_exact_yes": float(pred.mean()),
                                "share_parsed": float(np.mean([a.strip() in {"yes", "no"} for a in answers])),
                                "share_lenient_yes": float(lenient.mean()), "auc_lenient": auc(labels, lenient),
                                "answers_sample": answers[:5]})
    # (b) one forward pass, p(yes) from the two answer-token logits
    p_b, secs = timed(lambda: llm.predict_proba(prompts, use_prefix_cache=False), repeats)
    tok = llm.last_score_stats["tokens"]
    record("(b) one pass p(yes)", secs, tok, 2 * p_llm * tok, auc(labels, p_b))
    # (c) the same with the shared prefix encoded once and its KV cache copied per batch
    p_c, secs = timed(lambda: llm.predict_proba(prompts, use_prefix_cache=True), repeats)
    tok = llm.last_score_stats["tokens"]
    record("(c) one pass + prefix KV cache", secs, tok, 2 * p_llm * tok, auc(labels, p_c))
    res["max_abs_diff_b_c"] = float(np.abs(p_b - p_c).max())
    # (d) the e5 cross-encoder (untrained head: throughput only)
    _, secs = timed(lambda: enc.predict_proba(pairs), repeats)
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
            _, secs = timed(fn)
            res["batch_sweep"]["scoring"].setdefault(name, {})[bs] = sub_n / secs
    print("  batch-size sweep done", flush=True)

    # -- growth with rows: a second, smaller measured size; a linear fit projects larger ones --
    small = max(4, len(df) // 4)
    growth: dict[str, dict[str, Any]] = {}
    for name, fn in (("(b) one pass p(yes)", lambda n: llm.predict_proba(prompts[:n], False, progress=False)),
                     ("(c) one pass + prefix KV cache", lambda n: llm.predict_proba(prompts[:n], True, progress=False)),
                     ("(d) e5-small cross-encoder", lambda n: enc.predict_proba(pairs[:n], progress=False))):
        _, secs = timed(lambda: fn(small))
        growth[name] = {"measured": {small: secs, len(df): res["methods"][name]["seconds"]}}
    growth["(a) sampled generation"] = {"measured": {len(df): res["methods"]["(a) sampled generation"]["seconds"]}}
    if not quick:  # e5 is cheap enough to measure at 1k rows outright
        more = df_all.sample(n=min(1000, len(df_all)), random_state=SEED + 1)
        _, secs = timed(lambda: enc.predict_proba(builder.pairs(more), progress=False))
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
    train_llm = {bs: fit_throughput(llm, prompts, labels, steps, bs) for bs in ((2, 4) if quick else (2, 8))}
    train_enc = {bs: fit_throughput(enc, pairs, labels, steps, bs) for bs in ((4, 8) if quick else (8, 32))}
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
    train_top = {bs: fit_throughput(top, pairs, labels, steps, bs) for bs in ((4, 8) if quick else (8, 32))}
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
