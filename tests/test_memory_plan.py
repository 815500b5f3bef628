"""The memory plan: arithmetic against hand-computed numbers, the activation formula against what
autograd really keeps, and the error raised instead of an out-of-memory crash."""

from __future__ import annotations

import logging

import pytest
import torch

from mlsearch_lib.bench import cli, memory_report
from mlsearch_lib.config.profiles import LLMConfig, load_profile
from mlsearch_lib.models import memory_plan as mp
from mlsearch_lib.models.model_shapes import KNOWN_MODELS, ModelShape, model_shape

GIB = 1024 ** 3
Q14 = "Qwen/Qwen2.5-14B-Instruct"
# Qwen2.5-14B by hand (config: h 5120, 48 layers, I 13824, V 152064, 40 heads, 8 kv heads, untied):
#   per layer q 5120*5120 + k,v 2 * 5120*1024 + o 5120*5120 + MLP 3 * 5120*13824 = 275,251,200
#   + q/k/v biases 5120+1024+1024 + 2 norms 2*5120 = 275,268,608; x 48 = 13,212,893,184
#   + embeddings and lm_head 2 * 152064*5120 = 1,557,135,360 + final norm 5120
Q14_PARAMS = 14_770_033_664
# LoRA r16 on q,k,v,o,gate,up,down: 16 * (10240 + 6144 + 6144 + 10240 + 3 * 18944) = 1,433,600 a layer
Q14_LORA_7 = 48 * 1_433_600  # 68,812,800
Q14_LORA_HEAD = 16 * (5120 + 152064)  # 2,515,584


def test_qwen14b_parameters_weights_and_lora_by_hand():
    shape = model_shape(Q14)
    assert shape.total_params() == Q14_PARAMS
    assert Q14_PARAMS * 2 / GIB == pytest.approx(27.51, abs=0.01)  # the "~27.5 GiB bf16" of 14.8B
    gpu = load_profile("gpu").llm
    plan = mp.plan_llm(gpu, "gpu")
    assert plan.weights == Q14_PARAMS * 2
    seven = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert shape.lora_params(seven, 16) == Q14_LORA_7
    assert plan.trainable_params == Q14_LORA_7 + Q14_LORA_HEAD  # the seed adapts lm_head too
    n = plan.trainable_params
    assert (plan.trainable, plan.gradients, plan.optimizer) == (4 * n, 4 * n, 8 * n)  # fp32 adapters, AdamW 2 moments
    assert (plan.trainable + plan.gradients + plan.optimizer) / GIB == pytest.approx(1.063, abs=0.001)


def test_shape_from_config_matches_the_table_and_a_real_model():
    from transformers import AutoModelForCausalLM, Qwen2Config

    cfg = {"model_type": "qwen2", "hidden_size": 5120, "num_hidden_layers": 48, "intermediate_size": 13824,
           "vocab_size": 152064, "num_attention_heads": 40, "num_key_value_heads": 8, "tie_word_embeddings": False}
    assert ModelShape.from_config(cfg, Q14) == KNOWN_MODELS[Q14]
    with torch.device("meta"):  # no memory: just count what transformers builds from that config
        model = AutoModelForCausalLM.from_config(Qwen2Config(**cfg))
    assert sum(p.numel() for p in model.parameters()) == Q14_PARAMS
    gemma = model_shape("google/gemma-3-270m")  # the offline copy's config.json, else the table
    assert (gemma.hidden, gemma.layers, gemma.head_dim, gemma.vocab) == (640, 18, 256, 262144)
    assert gemma.total_params() == pytest.approx(268_098_176, rel=0.001)


def test_activation_arithmetic_by_hand():
    gpu = load_profile("gpu").llm.model_copy(update={"batch_size": 2, "gradient_checkpointing": False})  # 2 x 1024, bf16
    h, q, kv, i, layers = 5120, 5120, 1024, 13824, 48
    base = 4 * h + 3 * q + 3 * kv + 4 * i  # 94,208 elements a token and layer
    dropout = (5 * h + q + i) * 1.5  # dropped copies (2 bytes) + masks (1 byte)
    factor = 1.10 * (base + dropout) / h
    assert mp.decoder_activation_factor(model_shape(Q14), 0.05, 2) == pytest.approx(factor)
    assert mp.decoder_activation_factor(model_shape(Q14), 0.0, 2) == pytest.approx(1.10 * 94_208 / 5120)
    plan = mp.plan_llm(gpu, "gpu")
    assert plan.activations == pytest.approx(2 * 1024 * layers * factor * h * 2)
    ckpt = mp.plan_llm(gpu.model_copy(update={"gradient_checkpointing": True}), "gpu")
    assert ckpt.activations == pytest.approx(2 * 1024 * (layers + factor) * h * 2)
    fsdp = mp.plan_llm(gpu, "gpu", shards=4)
    assert fsdp.weights == pytest.approx(Q14_PARAMS * 2 / 4 + 2 * 275_251_200 * 2)
    assert fsdp.optimizer == plan.optimizer / 4 and fsdp.activations == plan.activations
    assert 60 < plan.gib() < 76  # fits an 80 GB card, not a 48 GB one
    assert memory_report.fits(plan) == "80 GB"


def test_4bit_weights_keep_embeddings_and_head_in_fp32():
    qlora = load_profile("gpu-qlora").llm
    plan = mp.plan_llm(qlora, "gpu-qlora")
    shape = model_shape(Q14)
    linear = 48 * 275_251_200
    assert plan.weights == pytest.approx(linear * 4.5 / 8 + (1_557_135_360 + shape.other_params()) * 4)
    assert plan.gib("weights") == pytest.approx(12.73, abs=0.01)
    assert plan.gib() < 24 * 0.95 * 1e9 / GIB  # the 24 GB card it is meant for


def test_activation_formula_matches_what_autograd_keeps_on_gemma():
    """Bytes of the tensors saved for backward in one LoRA training forward of gemma-3-270m."""
    from mlsearch_lib.models.causal_lm import CausalLMScorer

    b, s = 2, 32
    scorer = CausalLMScorer(LLMConfig(lora_r=16, lora_alpha=16, lora_dropout=0.05), seed=0)
    scorer._wrap_lora()
    scorer.model.train()
    shape = model_shape("google/gemma-3-270m")
    for dropout in (0.05, 0.0):
        if dropout == 0.0:  # the same model without LoRA dropout (one load of gemma, not two)
            for module in scorer.model.modules():
                if hasattr(module, "lora_dropout"):
                    for name in module.lora_dropout:
                        module.lora_dropout[name] = torch.nn.Identity()
        saved: dict[int, int] = {}

        def pack(t):
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            scorer.train_logits(scorer.model, torch.randint(10, 1000, (b, s)), torch.ones(b, s, dtype=torch.long))
        weights = {p.untyped_storage().data_ptr() for p in scorer.model.parameters()}
        measured = sum(n for ptr, n in saved.items() if ptr not in weights)
        planned = b * s * shape.layers * mp.decoder_activation_factor(shape, dropout, 4) * shape.hidden * 4
        assert planned == pytest.approx(measured, rel=0.10), dropout


class _FakeCuda:
    def __init__(self, monkeypatch, free_gib: float, total_gib: float, held_gib: float = 0.0, cached_gib: float = 0.0):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(free_gib * GIB), int(total_gib * GIB)))
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: int(held_gib * GIB))
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: int((held_gib + cached_gib) * GIB))
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake A10G")


def test_check_raises_a_clear_error_instead_of_oom(monkeypatch):
    gpu = load_profile("gpu").llm.model_copy(update={"batch_size": 2, "grad_accum": 4, "gradient_checkpointing": False})
    plan = mp.plan_llm(gpu, "gpu")
    _FakeCuda(monkeypatch, free_gib=20.0, total_gib=24.0, held_gib=1.0)
    with pytest.raises(mp.MemoryPlanError) as err:
        mp.check(plan, "cuda:0", gpu)
    msg = str(err.value)
    assert "profile 'gpu' does not fit" in msg and "Qwen/Qwen2.5-14B-Instruct" in msg
    assert f"needs ~{plan.gib():.1f} GiB per GPU" in msg
    assert "cuda:0 (Fake A10G) has 21.0 GiB available of 24.0 GiB" in msg  # free + what this process holds
    assert "llm.batch_size=1 llm.grad_accum=8" in msg and "llm.gradient_checkpointing=true" in msg
    assert "gpu-qlora profile" in msg and "configs/accelerate/fsdp_14b.yaml" in msg
    qlora_line = next(line for line in msg.splitlines() if "gpu-qlora" in line)
    assert qlora_line.endswith("(fits)")  # it says which change would be enough


def test_check_passes_when_it_fits_and_is_a_logged_no_op_on_cpu(monkeypatch, caplog):
    plan = mp.plan_llm(load_profile("gpu-qlora").llm, "gpu-qlora")
    with caplog.at_level(logging.INFO, logger="mlsearch_lib.models.memory_plan"):
        assert mp.check(plan) is None or torch.cuda.is_available()
    assert torch.cuda.is_available() or "memory plan not checked" in caplog.text
    _FakeCuda(monkeypatch, free_gib=40.0, total_gib=48.0)
    assert mp.check(plan, "cuda:0") == pytest.approx(40 * GIB)
    assert mp.check(plan, "cpu") is None  # a CPU device is never checked


def test_what_the_process_holds_counts_only_as_the_plans_own_weights(monkeypatch):
    plan = mp.plan_llm(load_profile("gpu-qlora").llm, "gpu-qlora")
    weights = plan.weights / GIB
    _FakeCuda(monkeypatch, free_gib=30.0, total_gib=80.0, held_gib=weights, cached_gib=2.0)
    assert mp.check(plan, "cuda:0") == pytest.approx((30.0 + 2.0 + weights) * GIB)  # its weights, loaded: fine
    # a previous fold's 14B still held (not freed) is not room for this one
    _FakeCuda(monkeypatch, free_gib=plan.total / GIB - weights - 1.0, total_gib=80.0, held_gib=weights + 28.0)
    with pytest.raises(mp.MemoryPlanError, match="does not fit"):
        mp.check(plan, "cuda:0")


def test_the_hook_names_the_profile(monkeypatch):
    assert mp.profile_names_for(load_profile("gpu").llm) == ["gpu"]
    _FakeCuda(monkeypatch, free_gib=10.0, total_gib=16.0)
    with pytest.raises(mp.MemoryPlanError, match="profile 'gpu-qlora' does not fit"):
        mp.check_config(load_profile("gpu-qlora").llm, "cuda:0")


def test_table_covers_every_profile_and_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLSEARCH_OUTPUT_ROOT", str(tmp_path))
    cli.main(["memory"])
    out = (tmp_path / "reports" / "bench" / "memory_plan.md").read_text()
    assert out.strip() in capsys.readouterr().out
    for name in ("tiny", "cpu", "gpu", "gpu-qlora"):
        assert f"| {name} | llm |" in out and f"| {name} | encoder |" in out
    assert "| gpu, FSDP over 4 GPUs | llm |" in out and "27.51" in out


def test_a_tiny_test_models_shape_is_known_before_anything_loaded_it(tmp_path, monkeypatch):
    """The budget check reads gpu-smoke's model shape before any step has converted the model:
    on a fresh model cache that raised KeyError and stopped the gpu-smoke book."""
    from mlsearch_lib.models.tiny_models import QWEN2_TINY_ID

    monkeypatch.setenv("MLSEARCH_MODEL_CACHE", str(tmp_path))
    shape = model_shape(QWEN2_TINY_ID)
    assert (shape.hidden, shape.layers) == (64, 2) and not shape.tie_embeddings
