"""``bench gpu`` away from a GPU: the command refuses and writes nothing; its measurements run end
to end on the CPU with the CUDA memory counters stubbed, on a 2-layer Qwen2 architecture with
random weights (the path that measured Qwen2.5-14B on an H200); the architecture it builds from the
memory plan's table is the real model's; random weights are seeded and refuse 4-bit loading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mlsearch_lib.bench import cli, gpu
from mlsearch_lib.config.profiles import LLMConfig
from mlsearch_lib.features.prompts import Prompt
from mlsearch_lib.models.causal_lm import CausalLMScorer
from mlsearch_lib.models.model_shapes import KNOWN_MODELS, ModelShape
from mlsearch_lib.models.offline import resolve_model

Q14 = "Qwen/Qwen2.5-14B-Instruct"
PROMPTS = [Prompt("Decide.\n\n", f"### Input:\nQuery: {q}\n\n### Response:\n")
           for q in ("lego", "a much longer query about shoes", "phone case")]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    src, out = resolve_model("google/gemma-3-270m"), tmp_path_factory.mktemp("tokenizer")
    for f in src.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(f, out / f.name)
    return out


@pytest.fixture(scope="module")
def tiny_arch(tmp_path_factory, tokenizer_dir) -> Path:
    """Qwen2's architecture at 2 layers x 32 (gemma's vocabulary size, for gemma's tokenizer), no weights."""
    from transformers import Qwen2Config

    arch = tmp_path_factory.mktemp("tiny_qwen2_config")
    Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=1, vocab_size=262144, tie_word_embeddings=False).save_pretrained(arch)
    return gpu.config_only_model(str(arch), tokenizer_dir, tmp_path_factory.mktemp("tiny_qwen2"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the refusal on a machine without CUDA")
def test_bench_gpu_without_cuda_exits_with_a_message_and_writes_nothing(isolated_outputs, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["gpu", "--random-weights", "--tokenizer", "anywhere"])
    assert exc.value.code == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (isolated_outputs / "out" / "reports" / "bench").exists()


def test_the_built_architecture_is_the_plans_model_with_the_tokenizer_and_no_weights(tmp_path, tokenizer_dir):
    out = gpu.config_only_model(Q14, tokenizer_dir, tmp_path / "q14")
    config = json.loads((out / "config.json").read_text())
    assert ModelShape.from_config(config, Q14) == KNOWN_MODELS[Q14]
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):  # count what transformers builds from it, without memory
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(out))
    assert sum(p.numel() for p in model.parameters()) == KNOWN_MODELS[Q14].total_params()
    assert {f.name for f in tokenizer_dir.iterdir()} <= {f.name for f in out.iterdir()}
    assert not list(out.glob("*.safetensors")) and not list(out.glob("*.bin"))
    with pytest.raises(ValueError, match="no architecture"):
        gpu.config_only_model("google/gemma-3-270m", tokenizer_dir, tmp_path / "other")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        gpu.config_only_model(Q14, tmp_path / "empty", tmp_path / "x")


def test_random_weights_are_seeded_and_refuse_4bit(tiny_arch):
    cfg = LLMConfig(model=str(tiny_arch), cutoff_len=64)
    p0 = CausalLMScorer(cfg, seed=0, random_weights=True).predict_proba(PROMPTS, progress=False)
    again = CausalLMScorer(cfg, seed=0, random_weights=True).predict_proba(PROMPTS, progress=False)
    p1 = CausalLMScorer(cfg, seed=1, random_weights=True).predict_proba(PROMPTS, progress=False)
    np.testing.assert_array_equal(p0, again)
    assert not np.allclose(p0, p1)
    assert ((p0 > 0) & (p0 < 1)).all()
    with pytest.raises(ValueError, match="4-bit"):
        CausalLMScorer(cfg.model_copy(update={"load_in_4bit": True}), seed=0, random_weights=True)


def test_bench_gpu_measures_scoring_training_and_memory_against_the_plan(isolated_outputs, monkeypatch, tiny_arch,
                                                                         tokenizer_dir):
    """With CUDA's counters stubbed, one run on the CPU: three scoring rows, training at the prompts'
    length and at the full cutoff (checkpointing off, on) beside the memory plan, and the report."""
    for name in ("max_memory_allocated", "max_memory_reserved"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: 3 * 1024 ** 3)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "stub GPU")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda *a, **k: type("P", (), {"total_memory": 2 ** 34}))
    monkeypatch.setattr(gpu, "matmul_peak_tflops", lambda: 1.0)
    res = gpu.run_gpu("tiny", str(tiny_arch), rows=8, quick=True, random_weights=True, tokenizer=tokenizer_dir)
    assert [m[:3] for m in res["methods"]] == ["(a)", "(b)", "(c)"]
    assert all(m["auc"] is None and m["rows_per_s"] > 0 for m in res["methods"].values())  # random: no ROC-AUC
    assert res["max_abs_diff_b_c"] < 1e-4  # fp32: the prefix cache changes nothing
    assert res["fp32_check"]["rows"] == 8 and res["fp32_check"]["max_abs_diff_b_c"] < 1e-4
    assert res["training"]["rows"] == 2 * 4 and res["training"]["rows_per_s"] > 0  # 2 steps of the batch of 4
    assert [m["gradient_checkpointing"] for m in res["memory"]] == [False, True]
    assert all(m["tokens_per_row"] == [255] for m in res["memory"])  # cutoff 256, one position for the answer
    assert res["memory"][1]["plan_activations_gib"] < res["memory"][0]["plan_activations_gib"]
    assert res["memory"][0]["peak_reserved_gib"] == pytest.approx(3.0)
    text = gpu.write_gpu_report(res)
    saved = isolated_outputs / "out" / "reports" / "bench"
    assert (saved / "gpu.md").read_text() == text and json.loads((saved / "gpu.json").read_text())["rows"] == 8
    assert "**random weights**" in text and "| (c) one pass p(yes) + prefix KV cache |" in text


def test_the_trl_benchmarks_token_table_counts_padding_and_shared_prefixes():
    from mlsearch_lib.bench.trl_sft import step_tokens

    a, b = [1] * 10, [2] * 10
    encoded = [(a, [0] * 4), (a, [0] * 2), (b, [0] * 6), (b, [0] * 2)]
    one_batch = step_tokens(encoded, batch_size=4)
    assert one_batch["padded"] == 16  # four rows padded to 10 + 6
    assert one_batch["padding_free"] == (14 + 12 + 16 + 12) / 4
    assert one_batch["prefix_shared"] == (10 + 10 + 4 + 2 + 6 + 2) / 4  # each prefix once
    singles = step_tokens(encoded, batch_size=1)
    assert singles["padded"] == singles["padding_free"] == singles["prefix_shared"]
