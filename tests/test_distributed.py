"""Distributed training: ``python -m mlsearch_lib.models.train`` on 2 CPU processes (DDP over gloo,
launched by ``accelerate launch`` with the shipped ``configs/accelerate/ddp.yaml``) must train
exactly like 1 process with the same global batch: per-device batch b on 2 processes vs 2b on 1.

The model is a 2-layer, 64-wide model of gemma-3's architecture (random weights, untied head, the
real gemma tokenizer) built into a temporary directory: the very code path of the causal-LM backbone (LoRA on
q/k/v/o/gate/up/down, the answer-token loss through the wrapped model's forward, peft adapter
saving) at a cost 2 CPU cores can pay twice in well under a minute. gemma-3-270m itself needs
~30 s per step of 8 rows here, too slow to train twice in a test. For the encoder the same holds
with a 2-layer BERT (e5's tokenizer) whose dropout is 0. LoRA dropout is 0, so nothing random
differs between the runs: the data order comes from the same seeded sampler on both.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlsearch_lib.models.offline import resolve_model

ROOT = Path(__file__).resolve().parent.parent
ROWS = 24  # a multiple of the global batch 8: no padded last batch (DDP repeats rows to even it)


def _copy_tokenizer(src: Path, dst: Path) -> None:
    for f in src.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "sentencepiece")):
            shutil.copy(f, dst / f.name)


def make_tiny_gemma(out: Path) -> Path:
    """gemma-3's architecture at 2 layers x 64 (random, seeded) with the real gemma tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM

    src = resolve_model("google/gemma-3-270m")
    cfg = AutoConfig.from_pretrained(src)
    cfg.update({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                "num_key_value_heads": 1, "head_dim": 32, "layer_types": ["sliding_attention", "full_attention"],
                "tie_word_embeddings": False})  # untied, like Qwen2.5-14B: lm_head can take a LoRA
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).save_pretrained(out)
    _copy_tokenizer(src, out)
    return out


def make_tiny_bert(out: Path) -> Path:
    """A 2-layer, 32-wide BERT without dropout, with e5's tokenizer."""
    from transformers import AutoConfig, BertModel

    src = resolve_model("intfloat/multilingual-e5-small")
    cfg = AutoConfig.from_pretrained(src)
    cfg.update({"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(out)
    _copy_tokenizer(src, out)
    return out


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {"llm": make_tiny_gemma(root / "gemma"), "encoder": make_tiny_bert(root / "bert")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_args(kind: str, model: Path, out: Path, batch: int) -> list[str]:
    section = "llm" if kind == "llm" else "encoder"
    sets = [f"{section}.model={model}", f"{section}.batch_size={batch}", f"{section}.max_train_rows={ROWS}",
            f"{section}.lr=0.01", f"{section}.warmup_ratio=0", f"{section}.epochs=2"]
    if kind == "llm":
        sets += ["llm.lora_dropout=0", "llm.cutoff_len=128", "llm.grad_accum=1"]
    args = ["--profile", "tiny", "--task", "QC", "--kind", kind, "--output", str(out), "--max-rows", "60"]
    for s in sets:
        args += ["--set", s]
    return args


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def _weights(model_dir: Path, kind: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    name = "adapter_model.safetensors" if kind == "llm" else "model.safetensors"
    return load_file(str(model_dir / "backbone" / name))


@pytest.mark.parametrize("kind", ["llm", "encoder"])
def test_two_processes_train_like_one_with_the_same_global_batch(kind, tiny_models, synthetic_data, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env.update(MLSEARCH_DATA_DIR=str(synthetic_data), MLSEARCH_OUTPUT_ROOT=str(tmp_path / "o"),
               MLSEARCH_BUILD_DIR=str(tmp_path / "b"), MLSEARCH_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", PYTHONHASHSEED="0")
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, "-m", "mlsearch_lib.models.train", *_train_args(kind, tiny_models[kind], one, 8)], env)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              str(ROOT / "configs/accelerate/ddp.yaml"), "--num_processes", "2", "--main_process_port",
              str(_free_port()), "-m", "mlsearch_lib.models.train"]
    proc = _run([*launch, *_train_args(kind, tiny_models[kind], two, 4)], env)

    log1 = json.loads((one / "train_log.json").read_text())
    log2 = json.loads((two / "train_log.json").read_text())
    assert (log1["world_size"], log2["world_size"]) == (1, 2)
    assert log1["train_rows"] == log2["train_rows"] == ROWS
    steps = 2 * ROWS // 8
    assert log1["global_step"] == log2["global_step"] == steps
    curve1 = [h["loss"] for h in log1["history"] if "loss" in h]
    curve2 = [h["loss"] for h in log2["history"] if "loss" in h]
    assert len(curve1) == len(curve2) == steps
    assert curve1[0] != curve1[-1]  # it learned something: the comparison below is not vacuous
    np.testing.assert_allclose(curve2, curve1, rtol=1e-4, atol=1e-6)

    w1, w2 = _weights(one, kind), _weights(two, kind)
    assert w1.keys() == w2.keys() and w1
    if kind == "llm":
        assert any("lora_B" in k for k in w1) and all(np.abs(w1[k]).max() > 0 for k in w1 if "lora_B" in k)
    worst = max(float(np.abs(w1[k] - w2[k]).max()) for k in w1)
    print(f"{kind}: loss curves {curve1} / {curve2}; saved weights differ by up to {worst:.2e}")
    assert worst < 1e-4, f"saved weights differ by up to {worst:.2e}"

    # only rank 0 saved (and cleaned up its checkpoints)
    out = proc.stdout + proc.stderr
    assert "[rank 0] INFO mlsearch_lib.models.train: saved" in out and "[rank 1] INFO mlsearch_lib.models.train: saved" not in out
    assert "rank 1/2" in out
    assert not (two / "checkpoints").exists()


# ------------------------------------------------------------ the DDP-safe loss, in one process


def test_training_logits_through_forward_equal_the_two_row_scoring_logits(tiny_models):
    """Training takes [no, yes] logits from the model's own forward (so DDP/FSDP wrappers see it);
    scoring takes them from two rows of lm_head. Both agree, also with LoRA on lm_head."""
    from mlsearch_lib.config.profiles import LLMConfig
    from mlsearch_lib.features.prompts import Prompt
    from mlsearch_lib.models.answer_head import answer_rows
    from mlsearch_lib.models.causal_lm import CausalLMScorer

    targets = ["q_proj", "v_proj", "lm_head"]
    scorer = CausalLMScorer(LLMConfig(model=str(tiny_models["llm"]), lora_r=4, lora_alpha=8, lora_dropout=0.0,
                                      target_modules=targets, cutoff_len=64), seed=0)
    scorer._wrap_lora()
    torch.manual_seed(1)
    with torch.no_grad():  # LoRA B starts at 0: give every adapter a visible effect
        for name, p in scorer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    prompts = [Prompt("Decide.\n\n", f"### Input:\nQuery: {q}\n\n### Response:\n")
               for q in ("lego", "a much longer query")]
    ids, mask = scorer._pad([a + b for a, b in scorer._encode(prompts)])
    scorer.model.eval()
    with torch.no_grad():
        train = scorer.train_logits(scorer.model, ids, mask)
        score = scorer.answer_logits(scorer.model, ids, mask)
        base = scorer.model.get_base_model()
        head = base.get_output_embeddings()
        plain = head.base_layer.weight[list(scorer.answer_ids)]
        rows = answer_rows(head, scorer.answer_ids)
    torch.testing.assert_close(train, score, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(plain, rows)  # the head's LoRA counts in scoring too


def test_gradient_accumulation_trains_like_the_full_batch(tiny_models, tmp_path):
    """batch 4 x 2 accumulation steps = batch 8 (the gpu profiles reach their effective batch 8 so):
    same loss curve, same adapter. The loss must be divided by the accumulation steps once."""
    from mlsearch_lib.config.profiles import LLMConfig
    from mlsearch_lib.features.prompts import Prompt
    from mlsearch_lib.models.causal_lm import CausalLMScorer

    prompts = [Prompt("Decide.\n\n", f"### Input:\nQuery: q{i} {'x ' * (i % 5)}\n\n### Response:\n") for i in range(16)]
    labels = np.array([i % 2 for i in range(16)])
    runs = []
    for bs, accum in ((8, 1), (4, 2)):
        cfg = LLMConfig(model=str(tiny_models["llm"]), lora_r=4, lora_alpha=8, lora_dropout=0.0, lr=1e-2,
                        warmup_ratio=0.0, batch_size=bs, grad_accum=accum, epochs=1, cutoff_len=64)
        scorer = CausalLMScorer(cfg, seed=0)
        fit = scorer.fit(prompts, labels)
        runs.append(([h["loss"] for h in fit["history"]],
                     {k: v.detach().clone() for k, v in scorer.model.named_parameters() if "lora_" in k}))
    (curve_a, w_a), (curve_b, w_b) = runs
    assert len(curve_a) == len(curve_b) == 2
    np.testing.assert_allclose(curve_b, curve_a, rtol=1e-5)
    for k in w_a:
        torch.testing.assert_close(w_b[k], w_a[k], rtol=1e-4, atol=1e-6)
