"""The causal-LM backbone on the real (offline) gemma-3-270m, with tiny prompts and budgets."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mlsearch_lib.config.profiles import LLMConfig
from mlsearch_lib.features.prompts import Prompt
from mlsearch_lib.models.answer_head import run_decoder, two_token_logits
from mlsearch_lib.models.causal_lm import CausalLMScorer

CFG = LLMConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0, batch_size=3, lr=2e-3, warmup_ratio=0.0,
                cutoff_len=256, score_batch_size=4)
PREFIX_A = ("Below is a search query and a product category path. Is the category relevant? Answer yes or no.\n\n"
            "### Options:\nQuery: [LANG=en] lego technic\nCategory: toys & hobbies,blocks\nAnswer: yes\n\n")
PREFIX_B = "Decide whether the category fits the query.\n\n"
BODIES = [
    "### Input:\nQuery: [LANG=en] iphone 13 case\nCategory: phones,mobile phone cases\n\n### Response:\n",
    "### Input:\nQuery: [LANG=fr] chaussures de course pour homme taille 42 noires\n"
    "Category: shoes,men's shoes,running shoes\n\n### Response:\n",
    "### Input:\nQuery: [LANG=es] funda\nCategory: garden\n\n### Response:\n",
]
# interleaved prefixes, bodies of different lengths: batches mix lengths and groups
PROMPTS = [Prompt(PREFIX_A if i % 2 == 0 else PREFIX_B, BODIES[i % 3]) for i in range(6)]
LABELS = np.array([1, 1, 0, 0, 1, 0])


@pytest.fixture(scope="module")
def scorer() -> CausalLMScorer:
    return CausalLMScorer(CFG, seed=0)


def test_answer_tokens_are_single_tokens(scorer):
    no, yes = scorer.answer_ids
    assert scorer.tokenizer.decode([yes]).strip() == "yes" and scorer.tokenizer.decode([no]).strip() == "no"


def test_prefix_cache_gives_the_same_probabilities_in_input_order(scorer):
    full = scorer.predict_proba(PROMPTS, use_prefix_cache=False, progress=False)
    cached = scorer.predict_proba(PROMPTS, use_prefix_cache=True, progress=False)
    assert cached.shape == (6,) and cached.dtype == np.float64 and ((cached > 0) & (cached < 1)).all()
    np.testing.assert_allclose(cached, full, atol=1e-4)
    assert scorer.last_score_stats["prefix_tokens"] > 0  # two prefixes, each encoded once
    one_by_one = np.array([scorer.predict_proba([p], use_prefix_cache=False, progress=False)[0] for p in PROMPTS])
    np.testing.assert_allclose(cached, one_by_one, atol=1e-4)  # padding and order change nothing
    assert len(set(np.round(one_by_one, 6))) > 1


def test_scoring_is_deterministic(scorer):
    a = scorer.predict_proba(PROMPTS, progress=False)
    b = scorer.predict_proba(PROMPTS, progress=False)
    np.testing.assert_array_equal(a, b)


def test_two_token_logits_match_the_full_vocabulary_softmax(scorer):
    ids = torch.tensor([scorer._prefix(PROMPTS[0].prefix) + scorer._encode(PROMPTS[:1])[0][1]])
    with torch.no_grad():
        hidden, _ = run_decoder(scorer.model, input_ids=ids, attention_mask=torch.ones_like(ids))
        full = scorer.model.lm_head(hidden[:, -1])  # the reference: all 262k logits
        two = two_token_logits(hidden[:, -1], scorer.model.lm_head.weight, scorer.answer_ids)
    torch.testing.assert_close(two, full[:, list(scorer.answer_ids)], atol=1e-4, rtol=1e-5)
    p_ref = torch.softmax(full[:, list(scorer.answer_ids)], dim=-1)[0, 1].item()
    assert p_ref == pytest.approx(scorer.predict_proba(PROMPTS[:1], progress=False)[0], abs=1e-5)


def test_scoring_never_projects_onto_the_full_vocabulary(scorer):
    calls = []
    hook = scorer.model.lm_head.register_forward_hook(lambda *a: calls.append(1))
    try:
        scorer.predict_proba(PROMPTS, use_prefix_cache=True, progress=False)
        scorer.predict_proba(PROMPTS, use_prefix_cache=False, progress=False)
    finally:
        hook.remove()
    assert calls == []


def test_long_bodies_are_cut_on_the_left_so_the_answer_cue_survives(scorer):
    short = copy.copy(scorer)
    short.cfg, short._prefix_ids = CFG.model_copy(update={"cutoff_len": 48}), {}
    long_body = Prompt(PREFIX_A, "### Input:\nQuery: " + "very long query " * 40 + "\n\n### Response:\n")
    (pre, body), = short._encode([long_body])
    cue = scorer.tokenizer("\n\n### Response:\n", add_special_tokens=False).input_ids
    assert len(pre) + len(body) == 47 and body[-len(cue):] == cue  # one position left for the answer
    assert pre[0] == scorer.tokenizer.bos_token_id


def test_generate_answers_is_seeded(scorer):
    a = scorer.generate_answers(PROMPTS[:2], max_new_tokens=2, progress=False)
    b = scorer.generate_answers(PROMPTS[:2], max_new_tokens=2, progress=False)
    assert a == b and len(a) == 2 and all(isinstance(x, str) for x in a)


def test_lora_fit_changes_predictions_saves_and_resumes(tmp_path):
    s = CausalLMScorer(CFG, seed=0)
    before = s.predict_proba(PROMPTS, progress=False)
    log = s.fit(PROMPTS, LABELS, output_dir=tmp_path / "run", max_steps=2, save_steps=1,
                eval_prompts=PROMPTS[:4], eval_labels=LABELS[:4])
    assert log["global_step"] == 2 and [h["step"] for h in log["history"]] == [1, 2]
    assert "eval_auc" in log["history"][-1] and (tmp_path / "run" / "checkpoint-2").is_dir()
    after = s.predict_proba(PROMPTS, progress=False)
    assert np.abs(after - before).max() > 1e-3
    s.save(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    again = CausalLMScorer.load(tmp_path / "adapter")
    np.testing.assert_allclose(again.predict_proba(PROMPTS, progress=False), after, atol=1e-6)
    # a later process resumes the same job from its last checkpoint
    resumed = again.fit(PROMPTS, LABELS, output_dir=tmp_path / "run", max_steps=3, save_steps=1)
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["global_step"] == 3


def test_lora_fit_is_deterministic_for_a_seed():
    runs = []
    for _ in range(2):
        s = CausalLMScorer(CFG, seed=7)
        s.fit(PROMPTS[:3], LABELS[:3], max_steps=1)
        runs.append(s.predict_proba(PROMPTS[:3], progress=False))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_weighted_two_class_loss(scorer):
    from mlsearch_lib.models.causal_lm import _AnswerTokenTrainer

    rows = [{"input_ids": p + b, "labels": int(y), "weight": 1.0} for (p, b), y in zip(scorer._encode(PROMPTS), LABELS)]
    batch = scorer._collate(rows)
    trainer = _AnswerTokenTrainer.__new__(_AnswerTokenTrainer)
    trainer.scorer = scorer
    with torch.no_grad():
        plain = trainer.compute_loss(scorer.model, batch)
        zeroed = trainer.compute_loss(scorer.model, dict(batch, weight=torch.tensor([2.0, 0, 2, 0, 2, 0])))
        logits = scorer.answer_logits(scorer.model, batch["input_ids"], batch["attention_mask"])
    per_row = torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="none")
    assert torch.isclose(plain, per_row.mean()) and torch.isclose(zeroed, per_row[::2].mean())


def _dequantised_copy(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every NF4 linear layer replaced by an fp32 ``nn.Linear`` of its dequantised weights."""
    import bitsandbytes as bnb
    from bitsandbytes.functional import dequantize_4bit

    ref = copy.deepcopy(model)
    for module in list(ref.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, bnb.nn.Linear4bit):
                weight = dequantize_4bit(child.weight.data, child.weight.quant_state).float()
                linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=child.bias is not None)
                linear.weight.data = weight
                if child.bias is not None:
                    linear.bias.data = child.bias.data.float()
                setattr(module, name, linear.requires_grad_(False))
    return ref


def _lora_grads(scorer: CausalLMScorer, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    rows = [{"input_ids": p + b, "labels": int(y), "weight": 1.0} for (p, b), y in zip(scorer._encode(PROMPTS), LABELS)]
    batch = scorer._collate(rows)
    model.zero_grad()
    logits = scorer.train_logits(model, batch["input_ids"], batch["attention_mask"])
    torch.nn.functional.cross_entropy(logits, batch["labels"]).backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_4bit_qlora_scores_near_fp32_backpropagates_exactly_and_reloads(scorer, tmp_path):
    """NF4 weights (bitsandbytes' CPU backend): p(yes) stays near fp32; the LoRA gradients that flow
    through the 4-bit layers equal those of the same model with the weights dequantised to fp32
    (bitsandbytes warns that its CPU kernel has no autograd rule: this shows the gradients are
    right); training moves the predictions, and the adapter reloads onto a fresh 4-bit base."""
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    q = CausalLMScorer(CFG.model_copy(update={"load_in_4bit": True}), seed=0)
    assert isinstance(q.model.get_decoder().layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    q._wrap_lora()
    reference = _dequantised_copy(q.model)  # before the first forward, which may repack the weights
    got, want = _lora_grads(q, q.model), _lora_grads(q, reference)
    assert got.keys() == want.keys() and len(got) > 100
    for name, g in want.items():
        assert torch.norm(got[name] - g) <= 0.05 * torch.norm(g) + 1e-6, name

    four = q.predict_proba(PROMPTS, progress=False)  # LoRA B starts at zero: the plain 4-bit model
    assert 0 < np.abs(four - scorer.predict_proba(PROMPTS, progress=False)).max() < 0.1
    np.testing.assert_allclose(q.predict_proba(PROMPTS, use_prefix_cache=False, progress=False), four, atol=5e-3)
    q.fit(PROMPTS, LABELS, max_steps=2)
    tuned = q.predict_proba(PROMPTS, progress=False)
    assert np.abs(tuned - four).max() > 1e-3
    q.save(tmp_path / "adapter")
    np.testing.assert_allclose(CausalLMScorer.load(tmp_path / "adapter").predict_proba(PROMPTS, progress=False),
                               tuned, atol=5e-3)


def test_answer_logits_are_not_rounded_to_bf16():
    """The cause of the bf16 gap between cached and uncached scoring (0.011 on 48 gemma prompts
    before, 0.007 after): the two logits were rounded to bf16 (multiples of 0.125 near 20) before
    their difference was taken. Computed in float32 from the same bf16 inputs, they are exact."""
    torch.manual_seed(0)
    hidden = (torch.randn(64, 640) * 4).to(torch.bfloat16)
    rows = (torch.randn(2, 640) * 0.05).to(torch.bfloat16)
    exact = hidden.double() @ rows.double().T
    assert exact.abs().max() > 8  # logits where bf16's spacing is 1/16 or coarser
    got = two_token_logits(hidden, rows, (0, 1))
    assert got.dtype == torch.float32
    diff = (got[:, 1] - got[:, 0]).double() - (exact[:, 1] - exact[:, 0])
    assert diff.abs().max() < 1e-4


def test_bf16_scoring_agrees_with_and_without_the_prefix_cache():
    """bf16 weights on the real gemma-3-270m: the two paths within 1e-2 of each other and of fp32."""
    fp32 = CausalLMScorer(CFG, seed=0).predict_proba(PROMPTS, use_prefix_cache=False, progress=False)
    bf16 = CausalLMScorer(CFG.model_copy(update={"bf16": True}), seed=0)
    assert bf16.model.dtype == torch.bfloat16
    full = bf16.predict_proba(PROMPTS, use_prefix_cache=False, progress=False)
    cached = bf16.predict_proba(PROMPTS, use_prefix_cache=True, progress=False)
    assert np.abs(cached - full).max() < 1e-2
    assert np.abs(full - fp32).max() < 1e-2 and np.abs(cached - fp32).max() < 1e-2
