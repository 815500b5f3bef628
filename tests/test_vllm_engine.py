"""The optional vLLM backend: CPU-testable pieces always; agreement with the transformers scorer
and generator only where vllm (the optional gpu extra) and CUDA are present."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mlsearch_lib.config.profiles import LLMConfig
from mlsearch_lib.features.prompts import Prompt
from mlsearch_lib.models import vllm_engine as vb
from mlsearch_lib.models.answer_head import answer_token_ids
from mlsearch_lib.models.causal_lm import CausalLMScorer
from mlsearch_lib.models.offline import load_tokenizer

HAS_VLLM = importlib.util.find_spec("vllm") is not None
PROMPTS = [
    Prompt("Below is a search query and a product category path. Answer yes or no.\n\n",
           f"### Input:\nQuery: [LANG={lang}] {q}\nCategory: {c}\n\n### Response:\n")
    for lang, q, c in [("en", "iphone 13 case", "phones,mobile phone cases"),
                       ("fr", "chaussures de course", "shoes,running shoes"),
                       ("es", "funda", "garden,plants"), ("ja", "レゴ テクニック", "toys & hobbies,blocks")]
]


@pytest.fixture(scope="module")
def gemma_tokenizer():
    return load_tokenizer("google/gemma-3-270m")


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory):
    from test_distributed import make_tiny_gemma

    return make_tiny_gemma(tmp_path_factory.mktemp("tiny") / "gemma")


# --------------------------------------------------------------- missing vllm: a clear error


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed: the missing-extra message cannot be seen")
def test_missing_vllm_names_the_gpu_extra(tiny_gemma):
    with pytest.raises(vb.VLLMUnavailable, match=r"optional `gpu` extra.*pip install -e '\.\[gpu\]'"):
        vb.require_vllm()
    with pytest.raises(vb.VLLMUnavailable, match="gpu"):
        vb.VLLMGenerator("google/gemma-3-270m")
    with pytest.raises(vb.VLLMUnavailable, match="gpu"):
        vb.VLLMScorer(str(tiny_gemma))
    # a profile asking for the vllm engine fails the same way, not with a bare ImportError
    scorer = CausalLMScorer(LLMConfig(model=str(tiny_gemma), engine="vllm", cutoff_len=64), seed=0)
    with pytest.raises(vb.VLLMUnavailable, match="gpu"):
        scorer.predict_proba(PROMPTS, progress=False)
    assert scorer.predict_proba(PROMPTS, progress=False, engine="transformers").shape == (len(PROMPTS),)


def test_vllm_is_not_imported_by_the_library():
    import sys

    import mlsearch_lib.bench  # noqa: F401
    import mlsearch_lib.models.causal_lm  # noqa: F401
    import mlsearch_lib.models.train  # noqa: F401

    assert HAS_VLLM or "vllm" not in sys.modules


# ----------------------------------------------------------------- token ids and log-probs


def test_answer_tokens_of_the_gemma_tokenizer(gemma_tokenizer):
    no, yes = answer_token_ids(gemma_tokenizer)
    assert gemma_tokenizer.decode([yes]).strip() == "yes" and gemma_tokenizer.decode([no]).strip() == "no"
    assert vb.scoring_kwargs((no, yes)) == {"max_tokens": 1, "temperature": 0.0, "logprobs": vb.SCORE_LOGPROBS,
                                            "allowed_token_ids": [no, yes]}


def test_answer_tokens_must_be_single_tokens():
    class Splitting:  # a tokenizer that spells "yes" in two pieces
        def __call__(self, text, add_special_tokens=False):
            ids = [ord(c) for c in text]
            return SimpleNamespace(input_ids=ids)

    with pytest.raises(AssertionError, match="not single tokens"):
        answer_token_ids(Splitting(), "fake")


def test_p_yes_is_the_softmax_over_the_two_answer_tokens():
    no, yes = 7, 9
    logits = {no: 1.3, yes: 2.1, 4: 5.0, 5: -1.0}
    full = torch.log_softmax(torch.tensor(list(logits.values()), dtype=torch.float64), 0).tolist()
    raw = {k: SimpleNamespace(logprob=v, rank=1) for k, v in zip(logits, full)}  # vLLM's Logprob objects
    expected = float(torch.softmax(torch.tensor([1.3, 2.1], dtype=torch.float64), 0)[1])
    assert vb.p_yes_from_logprobs(raw, (no, yes)) == pytest.approx(expected, abs=1e-9)
    # processed log-probs (normalised over the two allowed tokens only) give the same value
    two = torch.log_softmax(torch.tensor([1.3, 2.1], dtype=torch.float64), 0).tolist()
    assert vb.p_yes_from_logprobs({no: two[0], yes: two[1]}, (no, yes)) == pytest.approx(expected, abs=1e-9)
    # a token outside the returned top-k is bounded by the smallest log-prob returned
    p = vb.p_yes_from_logprobs({yes: -0.01, 3: -6.0, 4: -9.0}, (no, yes))
    assert p == pytest.approx(1 / (1 + np.exp(-9.0 + 0.01))) and p > 0.999
    assert vb.p_yes_from_logprobs({no: 0.0, yes: float("-inf")}, (no, yes)) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="neither answer token"):
        vb.p_yes_from_logprobs({1: -0.1}, (no, yes))


def test_generation_settings_per_row():
    params = SimpleNamespace(max_new_tokens=5, temperature=0.15, top_p=0.9, seed=13)
    a, b = vb.generation_kwargs(params, "prompt a"), vb.generation_kwargs(params, "prompt b")
    assert a["max_tokens"] == 5 and a["temperature"] == 0.15 and a["top_p"] == 0.9
    assert a["seed"] != b["seed"] and a == vb.generation_kwargs(params, "prompt a")  # per row, stable
    greedy = vb.generation_kwargs(SimpleNamespace(max_new_tokens=8, temperature=0.0, top_p=0.9, seed=0), "x")
    assert greedy == {"max_tokens": 8, "temperature": 0.0, "top_p": 1.0}
    stop = vb.generation_kwargs(SimpleNamespace(max_new_tokens=8, temperature=0.2, top_p=0.9, seed=0,
                                                stop="[/LABEL]"), "x")
    assert stop["stop"] == ["[/LABEL]"] and stop["include_stop_str_in_output"]


def test_prompts_get_the_same_token_ids_as_the_transformers_scorer(tiny_gemma):
    scorer = CausalLMScorer(LLMConfig(model=str(tiny_gemma), cutoff_len=40), seed=0)  # cuts some bodies
    expected = [pre + body for pre, body in scorer._encode(PROMPTS)]
    assert vb._prompt_token_ids(scorer.tokenizer, PROMPTS, 40) == expected
    assert max(map(len, expected)) == 39


def test_merged_adapter_scores_like_the_adapter(tiny_gemma, tmp_path):
    """vLLM serves merged weights: merging (LoRA on lm_head included) must not change p(yes)."""
    cfg = LLMConfig(model=str(tiny_gemma), lora_r=4, lora_alpha=8, lora_dropout=0.0, cutoff_len=64,
                    target_modules=["q_proj", "v_proj", "down_proj", "lm_head"])
    scorer = CausalLMScorer(cfg, seed=0)
    assert vb.adapter_fingerprint(scorer.model) == ""
    scorer._wrap_lora()
    untrained = vb.adapter_fingerprint(scorer.model)
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in scorer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    assert len(untrained) == 16 and vb.adapter_fingerprint(scorer.model) not in ("", untrained)  # a new merge
    p_adapter = scorer.predict_proba(PROMPTS, progress=False)
    with scorer.model.disable_adapter():
        p_base = scorer.predict_proba(PROMPTS, progress=False)
    assert np.abs(p_base - p_adapter).max() > 1e-3  # the adapter (and its lm_head part) matters
    scorer.save(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").stat().st_size < 8_000_000  # B of lm_head: 4 MB; a head copy: 67 MB
    merged = vb.merge_adapter(tmp_path / "adapter", tmp_path / "merged")
    plain = CausalLMScorer(cfg.model_copy(update={"model": str(merged)}), seed=0)
    np.testing.assert_allclose(plain.predict_proba(PROMPTS, progress=False), p_adapter, atol=1e-5)


def test_gpu_benchmark_without_cuda_says_so_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from mlsearch_lib.bench import cli

    monkeypatch.setenv("MLSEARCH_OUTPUT_ROOT", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exc:
        cli.main(["gpu"])
    assert exc.value.code == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not any(tmp_path.rglob("*"))


# ------------------------------------------------------------------ agreement (GPU + vllm)

WHY_NOT = ("vllm not installed (optional gpu extra)" if not HAS_VLLM
           else "" if torch.cuda.is_available() else "vllm installed, but no CUDA GPU")
needs_vllm = pytest.mark.skipif(bool(WHY_NOT), reason=WHY_NOT or "vllm and CUDA present")


@pytest.fixture(scope="module")
def vllm_engine():
    return vb.make_llm("google/gemma-3-270m", dtype="bfloat16", gpu_memory_utilization=0.4, max_model_len=1024)


@needs_vllm
def test_vllm_p_yes_agrees_with_the_transformers_scorer(vllm_engine):
    hf = CausalLMScorer(LLMConfig(bf16=True, cutoff_len=256), seed=0)
    vs = vb.VLLMScorer("google/gemma-3-270m", cutoff_len=256, llm=vllm_engine)
    assert vs.answer_ids == hf.answer_ids
    p_hf = hf.predict_proba(PROMPTS * 4, progress=False)
    p_vllm = vs.score(PROMPTS * 4)
    # bf16 on both sides, different kernels: agreement to bf16 precision
    assert np.abs(p_vllm - p_hf).max() < 0.03 and np.abs(p_vllm - p_hf).mean() < 0.01
    via_profile = hf.predict_proba(PROMPTS * 4, progress=False, engine="vllm")
    assert np.abs(via_profile - p_hf).max() < 0.03


@needs_vllm
def test_vllm_greedy_generation_agrees_with_transformers(vllm_engine):
    from transformers import AutoModelForCausalLM

    from mlsearch_lib.models.offline import resolve_model

    texts = [p.text for p in PROMPTS]
    params = SimpleNamespace(max_new_tokens=6, temperature=0.0, top_p=1.0, seed=0)
    got = vb.VLLMGenerator("google/gemma-3-270m", llm=vllm_engine).generate(texts, params)
    path = resolve_model("google/gemma-3-270m")
    tok = load_tokenizer("google/gemma-3-270m")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).cuda().eval()
    want = []
    for t in texts:  # one row at a time: no padding in the reference
        ids = tok(t, return_tensors="pt").to("cuda")
        out = model.generate(**ids, do_sample=False, max_new_tokens=6)
        want.append(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
    # the first token always, whole continuations for nearly all rows (bf16 ties may flip late)
    assert [g[:3] for g in got] == [w[:3] for w in want]
    assert sum(g == w for g, w in zip(got, want)) >= len(texts) - 1
