"""What every benchmark shares: the seeded sample and its prompts, best-of-n timing, the
matmul peak, and training throughput of a backbone measured the same way on CPU and GPU."""


from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from mlsearch_lib.config.profiles import PromptConfig
from mlsearch_lib.features.prompts import PromptBuilder

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


def non_embedding_params(model: torch.nn.Module) -> int:
    embeds = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    return sum(p.numel() for p in model.parameters() if id(p) not in embeds)


def timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[Any, float]:
    """``fn()``'s result and its best wall time over ``repeats`` runs: on a shared machine other
    work only ever slows a run down, so the fastest run is the least noisy estimate."""
    best = math.inf
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best




def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else float("nan")


def fit_throughput(model: Any, inputs: list, labels: np.ndarray, steps: int, batch_size: int) -> dict[str, float]:
    """Rows/s and tokens/s of ``steps`` optimiser steps after one warm-up step (Trainer start-up included)."""
    n = min(len(inputs), steps * batch_size)
    update = {"batch_size": batch_size} | ({"grad_accum": 1} if hasattr(model.cfg, "grad_accum") else {})
    cfg, model.cfg = model.cfg, model.cfg.model_copy(update=update)  # one batch per step: rows = steps x batch
    try:
        model.fit(inputs[:batch_size], labels[:batch_size], max_steps=1)  # warm-up: first-step allocations
        log, secs = timed(lambda: model.fit(inputs[:n], labels[:n], max_steps=steps))
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

