"""The cross-encoder backbone on the real (offline) multilingual-e5-small, with tiny budgets."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import qc_pairs  # noqa: E402

from mlsearch_lib.config.profiles import EncoderConfig  # noqa: E402
from mlsearch_lib.models.encoder import CrossEncoder, _WeightedTrainer  # noqa: E402
from mlsearch_lib.models.trainer import LengthGrouped, cap_rows, learning_curve  # noqa: E402

CFG = EncoderConfig(max_length=24, batch_size=4, epochs=1, lr=1e-4, warmup_ratio=0.0)


def _data(n: int = 16) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Half true (query, its category), half the query with another row's category."""
    rows = qc_pairs()[:n]
    pairs, labels = [], []
    for i, (_, query, cat) in enumerate(rows):
        other = rows[(i + 3) % len(rows)][2]
        pairs.append((query, cat if i % 2 == 0 else other))
        labels.append(1 if i % 2 == 0 else 0)
    return pairs, np.array(labels)


PAIRS, LABELS = _data()


@pytest.fixture(scope="module")
def fitted() -> tuple[CrossEncoder, dict]:
    enc = CrossEncoder(CFG, seed=0)
    log = enc.fit(PAIRS, LABELS, max_steps=2, eval_pairs=PAIRS[:8], eval_labels=LABELS[:8])
    return enc, log


def test_fit_then_predict_gives_probabilities_in_input_order(fitted):
    enc, log = fitted
    assert log["global_step"] == 2 and log["resumed_from"] is None
    assert [h["step"] for h in log["history"]] == [1, 2] and all("loss" in h for h in log["history"])
    assert 0.0 <= log["history"][-1]["eval_auc"] <= 1.0
    p = enc.predict_proba(PAIRS, progress=False)
    assert p.shape == (16,) and p.dtype == np.float64 and ((p > 0) & (p < 1)).all()
    shuffled = enc.predict_proba(PAIRS[::-1], batch_size=5, progress=False)
    np.testing.assert_allclose(shuffled[::-1], p, atol=1e-5)


def test_empty_pooler_is_reinitialised_and_embeddings_frozen(fitted):
    enc, _ = fitted
    assert enc.model.base_model.pooler.dense.weight.abs().sum() > 0  # the offline copy stores zeros
    assert not enc.model.get_input_embeddings().weight.requires_grad


def test_save_load_gives_identical_predictions(fitted, tmp_path):
    enc, _ = fitted
    enc.save(tmp_path / "enc")
    again = CrossEncoder.load(tmp_path / "enc")
    assert again.cfg == enc.cfg and again.seed == 0
    np.testing.assert_array_equal(again.predict_proba(PAIRS, progress=False), enc.predict_proba(PAIRS, progress=False))


def test_row_weights_change_the_loss(fitted):
    enc, _ = fitted
    batch = enc._collate([dict(e, labels=int(y)) for e, y in zip(enc._encode(PAIRS[:6]), LABELS[:6])])
    trainer = _WeightedTrainer.__new__(_WeightedTrainer)  # compute_loss uses no trainer state
    enc.model.eval()
    with torch.no_grad():
        plain = trainer.compute_loss(enc.model, batch)
        ones = trainer.compute_loss(enc.model, dict(batch, weight=torch.ones(6)))
        some = trainer.compute_loss(enc.model, dict(batch, weight=torch.tensor([0, 0, 0, 2.0, 2.0, 2.0])))
        logits = enc.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    per_row = torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="none")
    assert torch.isclose(plain, ones)
    assert not torch.isclose(plain, some)
    assert torch.isclose(some, per_row[3:].mean(), atol=1e-6)


def test_soft_targets_replace_the_labels_in_the_loss(fitted):
    enc, _ = fitted
    batch = enc._collate([dict(e, labels=int(y)) for e, y in zip(enc._encode(PAIRS[:6]), LABELS[:6])])
    trainer = _WeightedTrainer.__new__(_WeightedTrainer)
    enc.model.eval()
    soft = torch.tensor([0.9, 0.2, 0.7, 0.4, 0.5, 0.1])
    with torch.no_grad():
        hard = trainer.compute_loss(enc.model, batch)
        as_labels = trainer.compute_loss(enc.model, dict(batch, target=batch["labels"].float()))
        mixed = trainer.compute_loss(enc.model, dict(batch, target=soft))
        logp = torch.log_softmax(enc.model(**{k: v for k, v in batch.items() if k != "labels"}).logits, -1)
    assert torch.isclose(hard, as_labels, atol=1e-6)  # 0/1 targets are the ordinary loss
    assert torch.isclose(mixed, -(soft * logp[:, 1] + (1 - soft) * logp[:, 0]).mean(), atol=1e-6)


def test_fit_trains_on_soft_targets_and_refuses_bad_ones():
    a, b = CrossEncoder(CFG, seed=5), CrossEncoder(CFG, seed=5)
    a.fit(PAIRS, LABELS, max_steps=2)
    b.fit(PAIRS, LABELS, max_steps=2, targets=np.where(LABELS == 1, 0.6, 0.4))
    assert not np.allclose(a.predict_proba(PAIRS, progress=False), b.predict_proba(PAIRS, progress=False))
    with pytest.raises(ValueError, match="probabilities"):
        CrossEncoder(CFG, seed=5).fit(PAIRS, LABELS, max_steps=1, targets=LABELS * 2.0)


def test_interrupted_fit_resumes_from_its_checkpoint(tmp_path):
    out = tmp_path / "run"
    first = CrossEncoder(CFG, seed=0).fit(PAIRS, LABELS, output_dir=out, max_steps=2, save_steps=1)
    assert first["resumed_from"] is None and (out / "checkpoint-2").is_dir()
    # a new process would rebuild the model and call fit again with the same data
    second = CrossEncoder(CFG, seed=0).fit(PAIRS, LABELS, output_dir=out, max_steps=3, save_steps=1)
    assert second["resumed_from"].endswith("checkpoint-2") and second["global_step"] == 3
    assert [h["step"] for h in second["history"]] == [1, 2, 3]  # the curve survives the interruption
    # another job's checkpoints are never resumed
    third = CrossEncoder(CFG, seed=0).fit(PAIRS, 1 - LABELS, output_dir=out, max_steps=1, save_steps=1)
    assert third["resumed_from"] is None and third["global_step"] == 1


def test_lora_variant_trains_head_and_adapter_and_round_trips(tmp_path):
    enc = CrossEncoder(CFG.model_copy(update={"lora": True}), seed=0)
    trainable = {n for n, p in enc.model.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable) and any("classifier" in n for n in trainable)
    enc.fit(PAIRS, LABELS, max_steps=1)
    enc.save(tmp_path / "lora")
    assert (tmp_path / "lora" / "adapter_config.json").is_file()
    again = CrossEncoder.load(tmp_path / "lora")
    np.testing.assert_allclose(again.predict_proba(PAIRS, progress=False), enc.predict_proba(PAIRS, progress=False),
                               atol=1e-6)


def test_fit_is_deterministic_for_a_seed():
    a, b = CrossEncoder(CFG, seed=5), CrossEncoder(CFG, seed=5)
    a.fit(PAIRS, LABELS, max_steps=1)
    b.fit(PAIRS, LABELS, max_steps=1)
    np.testing.assert_array_equal(a.predict_proba(PAIRS, progress=False), b.predict_proba(PAIRS, progress=False))


def test_cap_rows_is_a_seeded_stratified_sample():
    labels = np.array([1] * 70 + [0] * 30)
    idx = cap_rows(labels, 20, seed=3)
    assert len(idx) == 20 and labels[idx].sum() == 14
    assert len(cap_rows(np.array([0] * 5 + [1] * 5 + [2] * 5), 7, seed=0)) == 7
    np.testing.assert_array_equal(idx, cap_rows(labels, 20, seed=3))
    assert not np.array_equal(idx, cap_rows(labels, 20, seed=4))
    np.testing.assert_array_equal(cap_rows(labels, None, seed=3), np.arange(100))


def test_learning_curve_merges_loss_and_eval_entries():
    hist = [{"loss": 0.7, "epoch": 0.5, "step": 1, "learning_rate": 1e-4}, {"eval_auc": 0.6, "epoch": 0.5, "step": 1},
            {"loss": 0.6, "epoch": 1.0, "step": 2}, {"train_runtime": 3.0, "step": 2}]
    assert learning_curve(hist) == [{"step": 1, "epoch": 0.5, "loss": 0.7, "learning_rate": 1e-4, "eval_auc": 0.6},
                                    {"step": 2, "epoch": 1.0, "loss": 0.6}]


def test_top_layers_mode_trains_only_the_top_and_scores_like_the_full_model(tmp_path):
    cfg = CFG.model_copy(update={"train_top_layers": 2})
    enc = CrossEncoder(cfg, seed=0)
    before = {n: p.detach().clone() for n, p in enc.model.named_parameters()}
    log = enc.fit(PAIRS, LABELS, output_dir=tmp_path / "run", max_steps=2, save_steps=1)
    assert log["global_step"] == 2 and (tmp_path / "run" / "checkpoint-2").is_dir()
    moved = {n for n, p in enc.model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(n.startswith(("bert.encoder.layer.10.", "bert.encoder.layer.11.", "bert.pooler.",
                                       "classifier.")) for n in moved)
    assert any(n.startswith("bert.encoder.layer.10.") for n in moved)
    # cached lower layers + top stack == one pass of the whole (updated) classifier, pads included
    p = enc.predict_proba(PAIRS, batch_size=5, progress=False)
    batch = enc._collate(enc._encode(PAIRS))
    with torch.no_grad():
        full = torch.softmax(enc.model(**batch).logits, -1)[:, 1].numpy()
    np.testing.assert_allclose(p, full, atol=1e-5)
    enc.save(tmp_path / "top")
    again = CrossEncoder.load(tmp_path / "top")
    np.testing.assert_allclose(again.predict_proba(PAIRS, progress=False), p, atol=1e-6)
    resumed = CrossEncoder(cfg, seed=0).fit(PAIRS, LABELS, output_dir=tmp_path / "run", max_steps=3, save_steps=1)
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["global_step"] == 3


def test_mean_pooling_reads_the_masked_mean_of_the_top_layer_and_leaves_the_pooler_alone(tmp_path):
    enc = CrossEncoder(CFG.model_copy(update={"train_top_layers": 1, "pooling": "mean"}), seed=0)
    pooler = {n: p.detach().clone() for n, p in enc.model.bert.pooler.named_parameters()}
    enc.fit(PAIRS, LABELS, max_steps=2)
    assert all(torch.equal(p, pooler[n]) for n, p in enc.model.bert.pooler.named_parameters())
    p = enc.predict_proba(PAIRS, batch_size=5, progress=False)  # padded batches of mixed lengths
    batch = enc._collate(enc._encode(PAIRS))
    with torch.no_grad():
        top = enc.model.bert(**batch).last_hidden_state
        mask = batch["attention_mask"][..., None].float()
        mean = (top * mask).sum(1) / mask.sum(1)
        expected = torch.softmax(enc.model.classifier(mean), -1)[:, 1].numpy()
    np.testing.assert_allclose(p, expected, atol=1e-5)
    enc.save(tmp_path / "mean")
    np.testing.assert_allclose(CrossEncoder.load(tmp_path / "mean").predict_proba(PAIRS, progress=False), p, atol=1e-6)
    with pytest.raises(ValueError, match="pooling='mean' needs train_top_layers"):
        CrossEncoder(CFG.model_copy(update={"pooling": "mean"}), seed=0)


def test_top_layers_mode_refuses_lora():
    with pytest.raises(ValueError, match="lora or train_top_layers"):
        CrossEncoder(CFG.model_copy(update={"lora": True, "train_top_layers": 1}), seed=0)


def test_pair_prefixes_reach_the_tokens_and_key_the_frozen_layer_cache():
    top = {"train_top_layers": 1}
    plain = CrossEncoder(CFG.model_copy(update=top), seed=0)
    e5 = CrossEncoder(CFG.model_copy(update={**top, "pair_prefixes": ("query: ", "passage: ")}), seed=0)
    query, item = "usb c cable", "consumer electronics,cables"  # short: max_length cuts nothing
    text = e5.tokenizer.decode(e5._encode([(query, item)])[0]["input_ids"], skip_special_tokens=True)
    assert text == f"query: {query} passage: {item}"
    assert "passage:" not in plain.tokenizer.decode(plain._encode([(query, item)])[0]["input_ids"])
    # one process, both models: each reads its own cached states (the prefixed pair is longer)
    assert len(e5._lower_states([(query, item)], progress=False)[0]) > len(plain._lower_states([(query, item)], progress=False)[0])


@pytest.mark.parametrize("key", ["input_ids", "hidden"])
def test_length_grouped_batches_hold_rows_of_similar_length(tmp_path, key):
    from transformers import TrainingArguments

    lengths = np.random.default_rng(0).integers(1, 65, size=400)
    rows = [{key: torch.zeros(n, 2) if key == "hidden" else [0] * n} for n in lengths]
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, use_cpu=True, report_to=[])
    torch.manual_seed(0)
    order = list(LengthGrouped(model=torch.nn.Linear(1, 1), args=args, train_dataset=rows)._get_train_sampler())
    assert sorted(order) == list(range(400))  # every row once per epoch

    def spread(idx: list[int]) -> float:  # mean (longest - shortest) within a batch of 8
        return float(np.mean([np.ptp(lengths[idx[i:i + 8]]) for i in range(0, len(idx), 8)]))

    assert spread(order) < spread(list(np.random.default_rng(1).permutation(400))) / 4


def test_bf16_trains_and_scores_in_bf16_autocast_with_fp32_weights():
    enc = CrossEncoder(CFG.model_copy(update={"train_top_layers": 2, "pooling": "mean", "bf16": True}), seed=0)
    seen: list[torch.dtype] = []
    hook = enc.model.bert.encoder.layer[11].intermediate.dense.register_forward_hook(
        lambda _m, _i, out: seen.append(out.dtype))
    enc.fit(PAIRS, LABELS, max_steps=2)
    assert seen and set(seen) == {torch.bfloat16}  # every training step ran the top layers in bf16
    seen.clear()
    p = enc.predict_proba(PAIRS, progress=False)
    hook.remove()
    assert set(seen) == {torch.bfloat16} and p.dtype == np.float64
    assert all(q.dtype == torch.float32 for q in enc.model.parameters())
    fp32 = enc.cfg.model_copy(update={"bf16": False})
    enc.cfg = fp32  # the same weights scored in fp32: bf16 rounds, it does not change the ranking much
    np.testing.assert_allclose(enc.predict_proba(PAIRS, progress=False), p, atol=0.02)


def test_encoder_benchmark_times_fp32_beside_bf16(tmp_path, monkeypatch, capsys):
    import json

    from mlsearch_lib.bench import cli
    from mlsearch_lib.config.hardware import describe

    monkeypatch.setenv("MLSEARCH_OUTPUT_ROOT", str(tmp_path))
    report = tmp_path / "reports" / "bench" / "encoder.json"
    report.parent.mkdir(parents=True)
    other = {"device": "another CPU, bf16 native", "date": "2026-01-01", "torch": "x", "threads": 2, "rows": 1,
             "steps": 1, "batch_size": 1, "quick": True, "repeats": 1, "runs": [
                 {"top_layers": 1, "precision": "fp32", "train_rows_per_s": 9.0, "score_rows_per_s": 9.0, "p_yes": [0.5]}]}
    report.write_text(json.dumps([other, {**other, "device": describe()}]))  # this device's stale run
    cli.main(["encoder", "--quick"])
    text = (tmp_path / "reports" / "bench" / "encoder.md").read_text()
    assert text.strip() in capsys.readouterr().out
    assert "| 1 | fp32 |" in text and "| 1 | bf16 |" in text and "| 1.00x |" in text
    saved = json.loads(report.read_text())
    # one section per device: the other machine's survives, this machine's is replaced, not repeated
    assert [r["device"] for r in saved] == ["another CPU, bf16 native", describe()]
    assert "## another CPU, bf16 native" in text and text.count(f"## {describe()}") == 1
    runs = saved[-1]["runs"]
    assert [r["precision"] for r in runs] == ["fp32", "bf16"]
    assert all(r["train_rows_per_s"] > 0 and r["score_rows_per_s"] > 0 and len(r["p_yes"]) == 16 for r in runs)
    gap = np.abs(np.array(runs[0]["p_yes"]) - np.array(runs[1]["p_yes"]))
    assert 0 < gap.max() < 0.05  # bf16 rounds (so not identical) but trains the same model


def test_contrastive_benchmark_times_a_tower_in_both_precisions(tmp_path, monkeypatch, capsys):
    import json

    from mlsearch_lib.bench import cli

    monkeypatch.setenv("MLSEARCH_OUTPUT_ROOT", str(tmp_path))
    cli.main(["contrastive", "--quick"])
    text = (tmp_path / "reports" / "bench" / "contrastive.md").read_text()
    assert text.strip() in capsys.readouterr().out and "| fp32 |" in text and "| 1.00x |" in text
    runs = json.loads((tmp_path / "reports" / "bench" / "contrastive.json").read_text())[-1]["runs"]
    assert [r["precision"] for r in runs] == ["fp32", "bf16"]
    assert runs[0]["max_cos_diff"] == 0 and 0 < runs[1]["max_cos_diff"] < 0.1  # bf16 rounds, same model
    assert all(r["seconds"] > 0 and r["steps"] == runs[0]["steps"] > 0 for r in runs)
