"""TRL's ``SFTTrainer`` against the book's answer-token Trainer (``_AnswerTokenTrainer``), on the
same rows, model, LoRA and schedule: ``python -m mlsearch_lib.bench trl`` writes ``reports/bench/trl.md``.

The book's trainer minimises the two-way cross-entropy over {no, yes} at the answer position, the
very softmax the scorer reads; SFT with ``completion_only_loss`` minimises the full-vocabulary
cross-entropy of the answer token. Both are measured the same way after training (the scorer's
two-way loss and ROC-AUC on held-out rows), beside their own loss curves and wall time. The
token table says what a step runs when rows are padded to the batch's longest (today), packed
without padding (TRL's ``padding_free``), and when the rows of a batch that share a prompt prefix
(the in-context examples of a language) run it once (prefix reuse, which neither trainer has).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mlsearch_lib.bench.common import SEED, auc, bench_inputs
from mlsearch_lib.config.paths import data_file, ensure, reports_dir
from mlsearch_lib.config.profiles import LLMConfig


def step_tokens(encoded: Sequence[tuple[Sequence[int], Sequence[int]]], batch_size: int, seed: int = SEED) -> dict[str, float]:
    """Tokens run per training row, in seeded random batches of ``batch_size``: padded to the
    longest row of its batch, packed without padding, and with each distinct prefix of a batch run once."""
    order = np.random.default_rng(seed).permutation(len(encoded))
    padded = packed = shared = 0
    for start in range(0, len(order), batch_size):
        batch = [encoded[i] for i in order[start:start + batch_size]]
        lengths = [len(p) + len(b) for p, b in batch]
        padded += len(batch) * max(lengths)
        packed += sum(lengths)
        shared += sum(len(p) for p in {tuple(p) for p, _ in batch}) + sum(len(b) for _, b in batch)
    n = max(1, len(encoded))
    return {"padded": padded / n, "padding_free": packed / n, "prefix_shared": shared / n}


def _two_way_loss(p_yes: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(np.where(labels == 1, p_yes, 1 - p_yes), 1e-9, 1.0)
    return float(-np.log(p).mean())


def _sft_train(scorer: Any, encoded: list[tuple[list[int], list[int]]], labels: np.ndarray,
               cfg: LLMConfig, epochs: float) -> dict[str, Any]:
    """SFTTrainer on the same token ids: prompt + answer token, loss on the answer token only."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    no, yes = scorer.answer_ids
    rows = [{"input_ids": pre + body + [yes if y else no], "completion_mask": [0] * (len(pre) + len(body)) + [1]}
            for (pre, body), y in zip(encoded, labels)]
    args = SFTConfig(output_dir=str(ensure(reports_dir() / "bench" / ".trl_tmp")), per_device_train_batch_size=cfg.batch_size,
                     num_train_epochs=epochs, learning_rate=cfg.lr, lr_scheduler_type=cfg.scheduler,
                     warmup_steps=cfg.warmup_ratio, weight_decay=0.0, logging_steps=1, save_strategy="no",
                     report_to=[], seed=SEED, data_seed=SEED, completion_only_loss=True, packing=False,
                     max_length=None, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
                     disable_tqdm=True,
                     # TRL's defaults differ from Trainer's: bf16 and gradient checkpointing on (emulated
                     # bf16 on this CPU made a step ~80x slower); the book's trainer runs both off here
                     bf16=cfg.bf16, gradient_checkpointing=cfg.gradient_checkpointing)
    trainer = SFTTrainer(model=scorer.model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=scorer.tokenizer)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    scorer.model.eval()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {"seconds": seconds, "losses": losses}


def run_trl(rows: int = 48, held_out: int = 96, epochs: float = 2.0, model: str = "google/gemma-3-270m") -> dict[str, Any]:
    from mlsearch_lib.data.records import read_task_file
    from mlsearch_lib.models.causal_lm import CausalLMScorer

    df_all = read_task_file(data_file("QC/train_QC.txt"), task="QC")
    df, builder, rest = bench_inputs(df_all, rows, extra=held_out)
    prompts, labels = builder.prompts(df), df["label"].to_numpy().astype(int)
    test_prompts, test_labels = builder.prompts(rest), rest["label"].to_numpy().astype(int)
    cfg = LLMConfig(model=model, lora_r=8, lora_alpha=16, lora_dropout=0.0, batch_size=4, epochs=epochs, lr=2e-4,
                    warmup_ratio=0.0, cutoff_len=256)
    res: dict[str, Any] = {"rows": rows, "held_out": held_out, "epochs": epochs, "model": model, "methods": {}}
    for name in ("answer-token Trainer (the book's)", "TRL SFTTrainer, completion-only"):
        scorer = CausalLMScorer(cfg, SEED)
        encoded = scorer._encode(prompts)
        if name.startswith("TRL"):
            scorer._wrap_lora()
            fit = _sft_train(scorer, encoded, labels, cfg, epochs)
        else:
            log = scorer.fit(prompts, labels)
            fit = {"seconds": log["train_seconds"], "losses": [h["loss"] for h in log["history"] if "loss" in h]}
        p_train = scorer.predict_proba(prompts, progress=False)
        p_test = scorer.predict_proba(test_prompts, progress=False)
        res["methods"][name] = {**fit, "two_way_loss_train": _two_way_loss(p_train, labels),
                                "two_way_loss_held_out": _two_way_loss(p_test, test_labels),
                                "auc_held_out": auc(test_labels, p_test)}
        res["tokens"] = step_tokens(encoded, cfg.batch_size)
        res["prefix_tokens"] = float(np.mean([len(p) for p, _ in encoded]))
        res["body_tokens"] = float(np.mean([len(b) for _, b in encoded]))
    return res


def write_trl_report(res: dict[str, Any]) -> str:
    from mlsearch_lib.config.hardware import describe

    lines = ["# TRL SFTTrainer against the book's answer-token Trainer", "",
             f"- date: {dt.date.today().isoformat()}; device: {describe()}; model {res['model']} + LoRA r 8, "
             f"{res['rows']} QC training rows, {res['epochs']:g} epochs, batch 4, lr 2e-4 (both); "
             f"{res['held_out']} held-out rows",
             f"- a row: {res['prefix_tokens']:.0f} prefix tokens (in-context examples, shared within a language) + "
             f"{res['body_tokens']:.0f} body tokens on average", "",
             "| trainer | train s | own loss, first → last step | two-way loss, train | two-way loss, held out | "
             "ROC-AUC, held out |", "|---|---|---|---|---|---|"]
    for name, m in res["methods"].items():
        first, last = (m["losses"][0], m["losses"][-1]) if m["losses"] else (float("nan"), float("nan"))
        lines.append(f"| {name} | {m['seconds']:.1f} | {first:.3f} → {last:.3f} | {m['two_way_loss_train']:.4f} | "
                     f"{m['two_way_loss_held_out']:.4f} | {m['auc_held_out']:.4f} |")
    t = res["tokens"]
    lines += ["", "Tokens a training row costs (seeded random batches of 4):", "",
              "| layout | tokens / row | vs padded |", "|---|---|---|"]
    for key, label in (("padded", "padded to the batch's longest (both trainers today)"),
                       ("padding_free", "padding-free packing (TRL `padding_free`, needs flash-attention)"),
                       ("prefix_shared", "each distinct prefix of a batch run once (prefix reuse)")):
        lines.append(f"| {label} | {t[key]:.1f} | {t[key] / t['padded']:.2f}x |")
    text = "\n".join(lines) + "\n"
    (ensure(reports_dir() / "bench") / "trl.md").write_text(text, encoding="utf-8")
    return text
