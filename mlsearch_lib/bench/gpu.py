"""``python -m mlsearch_lib.bench gpu``: what the causal-LM backbone costs on one CUDA machine.

Same seeded QC rows and the same model for every method: (a) the seed's sampled generation
(transformers ``generate``, temperature 0.15, 5 new tokens), (b) p(yes) from one forward pass
and (c) the same with the shared prefix's KV cache; with the optional gpu extra also vLLM's
one-token p(yes), prefix caching off and on, and the seed's generation on vLLM. Then LoRA training
rows/s with the profile's settings on those prompts, and training's peak memory on rows of the
full ``cutoff_len`` (the memory plan's worst case), gradient checkpointing off and on, beside
:mod:`mlsearch_lib.models.memory_plan`'s estimate. Writes ``reports/bench/gpu.md`` (+ ``gpu.json``).

``--random-weights`` builds the model from its architecture alone (``config.json``, written from
:data:`~mlsearch_lib.models.model_shapes.KNOWN_MODELS` when none is at hand) with seeded random weights
and ``--tokenizer``'s files: timings and memory are the real model's, its answers are not, so no
ROC-AUC is reported. That is how a 14B model is measured on a machine that cannot fetch 30 GB.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import importlib.metadata
import importlib.util
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlsearch_lib.bench.common import SEED, auc, bench_inputs, fit_throughput, non_embedding_params, timed
from mlsearch_lib.config.paths import data_file, ensure, reports_dir
from mlsearch_lib.config.profiles import LLMConfig, load_profile

GIB = 1024 ** 3


def gpu_unavailable() -> str | None:
    """Why ``bench gpu`` cannot run here (``None`` when it can)."""
    if not torch.cuda.is_available():
        return ("no CUDA device: `bench gpu` measures GPU scoring, training and memory and runs only on a "
                "CUDA machine; nothing was measured or written")
    return None


def vllm_version() -> str | None:
    return importlib.metadata.version("vllm") if importlib.util.find_spec("vllm") else None


def config_only_model(model_id: str, tokenizer_dir: str | Path, out: str | Path) -> Path:
    """``out`` holding ``model_id``'s architecture and ``tokenizer_dir``'s tokenizer, no weights.

    The ``config.json`` is ``model_id``'s own when ``model_id`` is a directory, else one written
    from the memory plan's table (the Qwen2.5 family, whose shapes it records).
    """
    from transformers import Qwen2Config

    from mlsearch_lib.models.model_shapes import KNOWN_MODELS

    out = ensure(Path(out))
    own = Path(model_id) / "config.json"
    if own.is_file():
        shutil.copy(own, out / "config.json")
    elif model_id in KNOWN_MODELS and KNOWN_MODELS[model_id].qkv_bias:
        s = KNOWN_MODELS[model_id]
        Qwen2Config(hidden_size=s.hidden, intermediate_size=s.intermediate, num_hidden_layers=s.layers,
                    num_attention_heads=s.heads, num_key_value_heads=s.kv_heads, vocab_size=s.vocab,
                    tie_word_embeddings=s.tie_embeddings, max_position_embeddings=32768).save_pretrained(out)
    else:
        raise ValueError(f"no architecture for {model_id!r}: pass a model directory holding config.json, or one "
                         f"of the Qwen2.5 ids of model_shapes.KNOWN_MODELS")
    files = [f for f in Path(tokenizer_dir).iterdir() if f.is_file() and f.name != "config.json"]
    if not any(f.name.startswith("tokenizer") for f in files):
        raise FileNotFoundError(f"{tokenizer_dir}: no tokenizer files (tokenizer.json / tokenizer_config.json)")
    for f in files:
        shutil.copy(f, out / f.name)
    return out


def matmul_peak_tflops(n: int = 8192, reps: int = 10) -> float:
    """bf16 TFLOP/s of an ``n`` x ``n`` matmul on the GPU: its practical peak."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e12


def _free_cuda() -> None:
    gc.collect()
    torch.cuda.empty_cache()


def _shutdown_vllm(llm: Any) -> None:
    """Best effort: vLLM V1 runs its engine core in a child process that holds the GPU memory."""
    shutdown = getattr(getattr(getattr(llm, "llm_engine", None), "engine_core", None), "shutdown", None)
    if callable(shutdown):
        shutdown()


def _full_length(prompts: list, tokenizer: Any, cutoff_len: int) -> list:
    """Each prompt with its body repeated past ``cutoff_len`` tokens: every row is cut to the full
    length, the worst case the memory plan counts."""
    shortest = min(len(x) for x in tokenizer([p.body for p in prompts], add_special_tokens=False).input_ids)
    reps = cutoff_len // max(1, shortest) + 1
    return [dataclasses.replace(p, body=" ".join([p.body] * reps)) for p in prompts]


def training_memory(hf: Any, cfg: LLMConfig, plan_cfg: LLMConfig, profile: str, prompts: list, labels: np.ndarray,
                    steps: int) -> dict[str, Any]:
    """Peak memory of LoRA training on full-length rows, beside the memory plan's estimate."""
    from mlsearch_lib.models.memory_plan import plan_llm

    long = _full_length(prompts, hf.tokenizer, cfg.cutoff_len)
    tokens = {len(p) + len(b) for p, b in hf._encode(long[:steps * cfg.batch_size])}
    saved, hf.cfg = hf.cfg, cfg
    try:
        _free_cuda()
        torch.cuda.reset_peak_memory_stats()
        train = fit_throughput(hf, long, labels, steps, cfg.batch_size)
    finally:
        hf.cfg = saved
    plan = plan_llm(plan_cfg, profile)
    return {"gradient_checkpointing": cfg.gradient_checkpointing, "batch_size": cfg.batch_size,
            "tokens_per_row": sorted(tokens), "rows_per_s": train["rows_per_s"], "tokens_per_s": train["tokens_per_s"],
            "peak_allocated_gib": torch.cuda.max_memory_allocated() / GIB,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / GIB,
            "plan_total_gib": plan.total / GIB, "plan_weights_gib": plan.weights / GIB,
            "plan_activations_gib": plan.activations / GIB, "plan_overhead_gib": plan.overhead / GIB}


def fp32_agreement(hf: Any, prompts: list) -> dict[str, Any]:
    """(b) against (c) with the model cast to fp32: the prefix cache must change nothing but
    rounding, so a bf16 difference between them is bf16's and not the cache's."""
    hf.model.float()
    hf.cfg = hf.cfg.model_copy(update={"bf16": False})
    p_b, p_c = (hf.predict_proba(prompts, use_prefix_cache=c, progress=False, engine="transformers")
                for c in (False, True))
    return {"rows": len(prompts), "max_abs_diff_b_c": float(np.abs(p_b - p_c).max())}


def run_gpu(profile: str = "gpu", model: str | None = None, rows: int = 512, quick: bool = False,
            tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.45, random_weights: bool = False,
            tokenizer: str | None = None) -> dict[str, Any]:
    """The measurements of the module docstring, as a dict (``write_gpu_report`` renders it)."""
    from mlsearch_lib.data.records import read_task_file
    from mlsearch_lib.models.causal_lm import CausalLMScorer

    prof = load_profile(profile)
    cfg = prof.llm.model_copy(update={"model": model}) if model else prof.llm
    run_cfg = cfg
    if random_weights:
        if tokenizer is None:
            raise ValueError("--random-weights needs --tokenizer DIR (the model's tokenizer files)")
        built = config_only_model(cfg.model, tokenizer, tempfile.mkdtemp(prefix="bench-gpu-model-"))
        run_cfg = cfg.model_copy(update={"model": str(built)})
    rows = min(rows, 32) if quick else rows
    torch.manual_seed(SEED)
    df_all = read_task_file(data_file("QC/train_QC.txt"), task="QC")
    df, builder, warm = bench_inputs(df_all, rows, prof.prompt, extra=16)
    labels = df["label"].to_numpy().astype(int)
    prompts, warm_prompts = builder.prompts(df), builder.prompts(warm)
    res: dict[str, Any] = {"profile": profile, "model": cfg.model, "random_weights": random_weights,
                           "rows": len(df), "quick": quick, "tensor_parallel_size": tensor_parallel_size,
                           "vllm": vllm_version(), "matmul_peak_tflops": matmul_peak_tflops(), "methods": {}}

    hf, res["load_s"] = timed(lambda: CausalLMScorer(run_cfg, SEED, random_weights=random_weights))
    flops_per_token = 2 * non_embedding_params(hf.model)
    ids = [pre + body for pre, body in hf._encode(prompts)]
    res["prefix_tokens"] = len(hf._prefix(prompts[0].prefix))
    res["mean_prompt_tokens"] = float(np.mean([len(x) for x in ids]))

    def record(name: str, secs: float, p: np.ndarray | None = None, extra: dict | None = None) -> None:
        tokens = (extra or {}).get("tokens", hf.last_score_stats.get("tokens"))
        res["methods"][name] = {
            "seconds": secs, "rows_per_s": len(df) / secs,
            "auc": None if p is None or random_weights else auc(labels, p),
            "tflops": None if tokens is None else flops_per_token * tokens / secs / 1e12, **(extra or {})}
        print(f"  {name}: {len(df) / secs:.1f} rows/s", flush=True)

    hf.generate_answers(warm_prompts[:4], max_new_tokens=5, temperature=0.15, progress=False)  # warm-up
    answers, secs = timed(lambda: hf.generate_answers(prompts, max_new_tokens=5, temperature=0.15, progress=False))
    record("(a) sampled generation, 5 tokens (the seed's)", secs,
           np.array([a.strip() == "yes" for a in answers], dtype=float))
    scores = {}
    cpu_slack = LLMConfig.model_fields["pad_slack"].default
    for slack in dict.fromkeys([cfg.pad_slack, cpu_slack]):  # the profile's, then the cpu default's
        hf.cfg = run_cfg.model_copy(update={"pad_slack": slack})
        for cache, name in ((False, "(b) one pass p(yes)"), (True, "(c) one pass p(yes) + prefix KV cache")):
            hf.predict_proba(warm_prompts, use_prefix_cache=cache, progress=False, engine="transformers")
            p, secs = timed(lambda: hf.predict_proba(prompts, use_prefix_cache=cache, progress=False,
                                                      engine="transformers"))
            scores.setdefault(cache, p)
            record(name if slack == cfg.pad_slack else f"{name}, pad slack {slack}", secs, p,
                   {"batches": hf.last_score_stats["batches"], "pad_slack": slack,
                    "tokens": hf.last_score_stats["tokens"]})
    hf.cfg = run_cfg
    res["max_abs_diff_b_c"] = float(np.abs(scores[False] - scores[True]).max())
    steps = 2 if quick else 10
    train = fit_throughput(hf, prompts, labels, steps, cfg.batch_size)
    res["training"] = {**train, "cutoff_len": cfg.cutoff_len, "gradient_checkpointing": cfg.gradient_checkpointing}
    print(f"  training: {train['rows_per_s']:.1f} rows/s", flush=True)
    res["memory"] = [training_memory(hf, run_cfg.model_copy(update={"gradient_checkpointing": ckpt}),
                                     cfg.model_copy(update={"gradient_checkpointing": ckpt}), profile,
                                     prompts, labels, 2 if quick else 3)
                     for ckpt in (False, True)]
    res["fp32_check"] = fp32_agreement(hf, prompts[:16 if quick else 64])
    warm_ids = [pre + body for pre, body in hf._encode(warm_prompts)]
    hf = None  # vLLM's engines below get the memory
    _free_cuda()
    if res["vllm"] and not random_weights:  # vLLM reads the weights itself: a random model is not its to build
        _vllm_methods(res, run_cfg, ids, warm_ids, prompts, scores[True], labels, tensor_parallel_size,
                      gpu_memory_utilization)
    return res


def _vllm_methods(res: dict[str, Any], cfg: LLMConfig, ids: list, warm_ids: list, prompts: list,
                  p_c: np.ndarray, labels: np.ndarray, tensor_parallel_size: int,
                  gpu_memory_utilization: float) -> None:
    """vLLM's one-token p(yes) on the same token ids (prefix caching off, on) and the seed's
    generation on vLLM."""
    from mlsearch_lib.models.vllm_engine import VLLMGenerator, VLLMScorer, make_llm

    n = len(ids)
    for caching in (False, True):
        llm = make_llm(cfg.model, tensor_parallel_size=tensor_parallel_size, enable_prefix_caching=caching,
                       dtype="bfloat16" if cfg.bf16 else "float32", gpu_memory_utilization=gpu_memory_utilization,
                       max_model_len=cfg.cutoff_len + 8)
        scorer = VLLMScorer(cfg.model, cutoff_len=cfg.cutoff_len, llm=llm)
        scorer.score_token_ids(warm_ids)
        p, secs = timed(lambda: scorer.score_token_ids(ids))
        res["methods"][f"({'e' if caching else 'd'}) one token p(yes), vLLM, prefix caching "
                       f"{'on' if caching else 'off'}"] = {
            "seconds": secs, "rows_per_s": n / secs, "auc": auc(labels, p), "tflops": None,
            "max_abs_diff_vs_c": float(np.abs(p - p_c).max())}
        if caching:
            gen = VLLMGenerator(cfg.model, llm=llm)
            params = argparse.Namespace(max_new_tokens=5, temperature=0.15, top_p=1.0, seed=SEED)
            texts, secs = timed(lambda: gen.generate([x.text for x in prompts], params))
            res["methods"]["(f) sampled generation, vLLM (prefix caching on)"] = {
                "seconds": secs, "rows_per_s": n / secs, "tflops": None,
                "auc": auc(labels, np.array([x.strip() == "yes" for x in texts], dtype=float))}
        _shutdown_vllm(llm)
        llm = scorer = None
        _free_cuda()


def gpu_markdown(res: dict[str, Any]) -> str:
    base = res["methods"]["(a) sampled generation, 5 tokens (the seed's)"]["rows_per_s"]
    peak = res["matmul_peak_tflops"]
    lines = ["| method | batches | rows/s | vs (a) | achieved TFLOP/s (% of bf16 matmul peak) | ROC-AUC (zero-shot) | "
             "max abs p diff vs (c) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, m in res["methods"].items():
        auc = "—" if m["auc"] is None or np.isnan(m["auc"]) else f"{m['auc']:.3f}"
        fl = "—" if m.get("tflops") is None else f"{m['tflops']:.3g} ({100 * m['tflops'] / peak:.0f}%)"
        diff = f"{m['max_abs_diff_vs_c']:.1e}" if "max_abs_diff_vs_c" in m else ""
        lines.append(f"| {name} | {m.get('batches', '')} | {m['rows_per_s']:.1f} | {m['rows_per_s'] / base:.1f}x | "
                     f"{fl} | {auc} | {diff} |")
    t = res["training"]
    lines += ["", "| LoRA training (profile settings, one batch a step) | batch | grad. ckpt | rows/s | tokens/s |",
              "|---|---:|---|---:|---:|",
              f"| prompts above (mean {res['mean_prompt_tokens']:.0f} tokens) | {t['batch_size']} | "
              f"{'on' if t['gradient_checkpointing'] else 'off'} | {t['rows_per_s']:.2f} | {t['tokens_per_s']:.0f} |"]
    for m in res["memory"]:
        lines.append(f"| full-length rows ({'/'.join(map(str, m['tokens_per_row']))} tokens) | {m['batch_size']} | "
                     f"{'on' if m['gradient_checkpointing'] else 'off'} | {m['rows_per_s']:.2f} | "
                     f"{m['tokens_per_s']:.0f} |")
    lines += ["", "| training on full-length rows | grad. ckpt | peak allocated GiB | peak reserved GiB | "
              "plan total GiB (weights / activations / overhead) | measured / plan |", "|---|---|---:|---:|---:|---:|"]
    for m in res["memory"]:
        lines.append(f"| batch {m['batch_size']} | {'on' if m['gradient_checkpointing'] else 'off'} | "
                     f"{m['peak_allocated_gib']:.1f} | {m['peak_reserved_gib']:.1f} | {m['plan_total_gib']:.1f} "
                     f"({m['plan_weights_gib']:.1f} / {m['plan_activations_gib']:.1f} / {m['plan_overhead_gib']:.1f}) | "
                     f"{m['peak_reserved_gib'] / m['plan_total_gib']:.2f} |")
    return "\n".join(lines)


def write_gpu_report(res: dict[str, Any]) -> str:
    import json

    props = torch.cuda.get_device_properties(0)
    weights = ("**random weights** (the architecture and the real tokenizer: timings and memory are the model's, "
               "its answers are not, so no ROC-AUC)" if res["random_weights"] else "its released weights")
    head = [
        "# GPU throughput and memory: one-pass p(yes), the seed's sampled generation, LoRA training",
        "",
        f"- date: {dt.date.today().isoformat()}; device: {torch.cuda.get_device_name(0)} "
        f"({props.total_memory / GIB:.0f} GiB), bf16 matmul peak {res['matmul_peak_tflops']:.0f} TFLOP/s "
        f"(8192^3, measured); torch {torch.__version__}, transformers {importlib.metadata.version('transformers')}, "
        f"vllm {res['vllm'] or 'not installed (optional gpu extra): its rows are absent'}",
        f"- model {res['model']} with {weights}; profile {res['profile']}'s llm settings; {res['rows']} QC "
        f"training rows (seeded sample){' — quick run' if res['quick'] else ''}; shared prefix "
        f"{res['prefix_tokens']} tokens, prompts {res['mean_prompt_tokens']:.0f} tokens on average; "
        f"model built in {res['load_s']:.0f} s",
        f"- (b) and (c) differ by at most {res['max_abs_diff_b_c']:.1e} in p(yes) in the profile's precision, "
        f"{res['fp32_check']['max_abs_diff_b_c']:.1e} with the model in fp32 ({res['fp32_check']['rows']} rows, "
        f"after training): the cache changes nothing but rounding",
        "- achieved TFLOP/s = 2 x non-embedding parameters x tokens processed (pads included) / time",
        "- memory: PyTorch's allocator peaks (the CUDA context, ~0.5 GiB, is outside both); the plan is "
        "`mlsearch_lib.models.memory_plan`'s estimate for the same settings (`reports/bench/memory_plan.md`)",
        "",
        "",
    ]
    text = "\n".join(head) + gpu_markdown(res) + "\n"
    out = ensure(reports_dir() / "bench")
    (out / "gpu.md").write_text(text, encoding="utf-8")
    (out / "gpu.json").write_text(json.dumps(res, indent=2, default=str) + "\n", encoding="utf-8")
    return text
