"""Cross-encoder backbone: query and category/title read together as one text pair.

A fine-tuned ``AutoModelForSequenceClassification`` (2 labels) on top of an encoder resolved
offline by :func:`mlsearch_lib.models.offline.resolve_model`. Training goes through the Hugging
Face :class:`~transformers.Trainer` so that checkpoints, resumption after an interruption, the
learning-rate schedule and logging behave as users of transformers expect; only the loss is
ours (per-row weights). With ``train_top_layers`` only the top layers, pooler and head train,
on cached outputs of the frozen layers below: on a CPU that lets an epoch see every row; there
``pooling="mean"`` lets the head read the top layer's mean, as e5 was pre-trained. The
training helpers both backbones share live in :mod:`mlsearch_lib.models.trainer`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer
from transformers.modeling_outputs import SequenceClassifierOutput

from mlsearch_lib.config.hardware import default_device
from mlsearch_lib.config.profiles import EncoderConfig
from mlsearch_lib.config.progress import tqdm
from mlsearch_lib.config.seeds import seed_everything
from mlsearch_lib.features.embeddings import length_batches
from mlsearch_lib.models.trainer import (
    cap_rows,
    fit_fingerprint,
    normalised_weights,
    read_meta,
    run_trainer,
    weighted_cross_entropy,
    write_meta,
)

log = logging.getLogger(__name__)

Pair = tuple[str, str]
#: LoRA shape for the encoder (EncoderConfig has only an on/off switch).
ENCODER_LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.1}
#: BERT-family linear layers LoRA adapts (suffix match; the pooler stays fully trainable).
_BERT_LORA_TARGETS = ["query", "key", "value", "intermediate.dense", "output.dense"]
#: Outputs of frozen lower layers per (model, layers below, max_length, input kind) and input: those
#: layers never change, so every fold of a cross-validation in one process shares them (the
#: cross-encoder's pairs and the contrastive towers' texts: :func:`lower_states`).
LOWER_STATES: dict[tuple[Any, ...], dict[Any, torch.Tensor]] = {}


class CrossEncoder:
    """p(relevant | query, item) from a sequence-pair classifier; fit / predict_proba / save / load."""

    kind = "encoder"

    def __init__(self, cfg: EncoderConfig, seed: int):
        from transformers import AutoModelForSequenceClassification

        from mlsearch_lib.models.offline import load_tokenizer, resolve_model

        self.cfg, self.seed = cfg, seed
        self.device = default_device()
        path = resolve_model(cfg.model)
        seed_everything(seed)  # the classifier head (and LoRA A matrices) are initialised below
        self.tokenizer = load_tokenizer(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        _reinit_empty_pooler(self.model)
        if cfg.train_top_layers:
            self._freeze_below_top()
        elif cfg.pooling != "cls":
            raise ValueError(f"encoder: pooling={cfg.pooling!r} needs train_top_layers (up to "
                             f"{self.model.config.num_hidden_layers}, every layer)")
        elif cfg.lora:
            self.model = self._wrap_lora(self.model)
        elif cfg.freeze_embeddings:
            # The 250k-row word embedding is ~80% of e5-small's weights; freezing it makes a CPU
            # step ~4x cheaper and keeps rare-language token vectors from drifting on little data.
            self.model.get_input_embeddings().weight.requires_grad_(False)
        self.model.to(self.device)

    @staticmethod
    def _wrap_lora(model: torch.nn.Module) -> torch.nn.Module:
        from peft import LoraConfig, TaskType, get_peft_model

        bert_like = model.config.model_type in {"bert", "xlm-roberta", "roberta"}
        save = ["classifier"] + (["pooler"] if getattr(model.base_model, "pooler", None) is not None else [])
        config = LoraConfig(task_type=TaskType.SEQ_CLS, target_modules=_BERT_LORA_TARGETS if bert_like else None,
                            modules_to_save=save, bias="none", **ENCODER_LORA)
        return get_peft_model(model, config)

    # -- top-layers mode (cfg.train_top_layers) -------------------------------------------------
    def _freeze_below_top(self) -> None:
        if self.cfg.lora:
            raise ValueError("encoder: choose lora or train_top_layers, not both")
        self.model.requires_grad_(False)
        self._top = _TopStack(self.model, int(self.cfg.train_top_layers), self.cfg.pooling)
        self._top.requires_grad_(True)

    def _lower_states(self, pairs: Sequence[Pair], progress: bool = True) -> list[torch.Tensor]:
        """Each pair's hidden states below the trained layers, computed once per process."""
        base = self.model.base_model
        n_low = len(base.encoder.layer) - len(self._top.layers)
        return lower_states(base, n_low, (self.cfg.model, n_low, self.cfg.max_length, self.cfg.pair_prefixes),
                            pairs, self._encode, 2 * self.cfg.batch_size, self.device, progress)

    def _collate_states(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Right-pads cached hidden states; the mask keeps the pads out of attention."""
        hidden, mask = pad_states([f["hidden"] for f in features])
        batch = {"hidden": hidden, "attention_mask": mask}
        for key, dtype in (("labels", torch.long), ("weight", torch.float32), ("target", torch.float32)):
            if key in features[0]:
                batch[key] = torch.tensor([f[key] for f in features], dtype=dtype)
        return batch

    # -- data ---------------------------------------------------------------------------------
    def _inputs(self, pairs: Sequence[Pair], progress: bool = True) -> tuple[list[dict], torch.nn.Module, Callable]:
        """Per-pair features, the module that reads them and their collator: token ids for the
        whole classifier, or cached lower-layer states for the top stack (``train_top_layers``)."""
        if self.cfg.train_top_layers:
            return [{"hidden": h} for h in self._lower_states(pairs, progress)], self._top, self._collate_states
        return self._encode(pairs), self.model, self._collate

    def _encode(self, pairs: Sequence[Pair]) -> list[dict[str, list[int]]]:
        qp, ip = self.cfg.pair_prefixes
        enc = self.tokenizer([qp + a for a, _ in pairs], [ip + b for _, b in pairs], truncation=True,
                             max_length=self.cfg.max_length)
        keys = [k for k in self.tokenizer.model_input_names if k in enc]
        return [{k: enc[k][i] for k in keys} for i in range(len(pairs))]

    def _collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Right-pads a batch; keeps ``labels`` and per-row ``weight`` for :class:`_WeightedTrainer`."""
        width = max(len(f["input_ids"]) for f in features)
        pad = {"input_ids": self.tokenizer.pad_token_id, "attention_mask": 0, "token_type_ids": 0}
        batch = {k: torch.tensor([f[k] + [pad[k]] * (width - len(f[k])) for f in features])
                 for k in features[0] if k in pad}
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
        for key in ("weight", "target"):
            if key in features[0]:
                batch[key] = torch.tensor([f[key] for f in features], dtype=torch.float32)
        return batch

    # -- training -----------------------------------------------------------------------------
    def fit(self, pairs: Sequence[Pair], labels: np.ndarray, weights: np.ndarray | None = None,
            output_dir: Path | None = None, eval_pairs: Sequence[Pair] | None = None,
            eval_labels: np.ndarray | None = None, *, max_steps: int | None = None,
            save_steps: int = 50, targets: np.ndarray | None = None) -> dict[str, Any]:
        """Fine-tune on ``pairs``; with ``output_dir`` checkpoint every ``save_steps`` and resume.

        Returns ``{"history": [{step, epoch, loss[, eval_auc]}...], "resumed_from", "global_step",
        "train_rows", "train_seconds"}``. ``max_steps`` (tests, benchmarks) overrides ``epochs``.
        ``targets`` (soft p(yes) per row: distillation) replace the 0/1 labels in the loss; the
        labels still stratify the row cap.
        """
        labels = np.asarray(labels, dtype=np.int64)
        idx = cap_rows(labels, self.cfg.max_train_rows, self.seed)
        w = normalised_weights(weights, len(labels))
        feats, model, collate = self._inputs([pairs[i] for i in idx])
        rows = [dict(e, labels=int(labels[i]), weight=float(w[i])) for e, i in zip(feats, idx)]
        if targets is not None:
            targets = np.asarray(targets, dtype=np.float64)
            if targets.shape != labels.shape or not ((targets >= 0) & (targets <= 1)).all():
                raise ValueError(f"targets must be {len(labels)} probabilities, one per pair")
            for r, i in zip(rows, idx):
                r["target"] = float(targets[i])
        tag = fit_fingerprint([pairs[i] for i in idx], labels[idx] if targets is None else targets[idx], w[idx],
                              self.cfg.model_dump(), self.seed)
        evaluate = None
        if eval_pairs is not None and eval_labels is not None:
            evaluate = lambda: self.predict_proba(eval_pairs, progress=False)  # noqa: E731
        args = dict(lr=self.cfg.lr, weight_decay=self.cfg.weight_decay, warmup_ratio=self.cfg.warmup_ratio,
                    epochs=self.cfg.epochs, batch_size=self.cfg.batch_size, grad_accum=1, scheduler="linear",
                    bf16=self.cfg.bf16, group_by_length=self.cfg.group_by_length)
        result = run_trainer(_WeightedTrainer, model, rows, collate, args, self.seed, output_dir, tag,
                             max_steps=max_steps, save_steps=save_steps, evaluate=evaluate, eval_labels=eval_labels)
        self._full_state_dict = result.pop("full_state_dict", None)  # FSDP only: gathered for save()
        return result

    # -- scoring ------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_proba(self, pairs: Sequence[Pair], batch_size: int | None = None,
                      progress: bool = True) -> np.ndarray:
        """p(label 1) per pair (float64, input order); batches sorted by length to pad little.

        ``last_score_stats`` records rows, batches and tokens processed (pads included).
        """
        was_training = self.model.training
        self.model.eval()
        feats, model, collate = self._inputs(pairs, progress)
        order = np.argsort([-len(f["hidden"] if "hidden" in f else f["input_ids"]) for f in feats], kind="stable")
        bs = batch_size or 2 * self.cfg.batch_size
        out = np.empty(len(feats), dtype=np.float64)
        stats = {"rows": len(feats), "batches": 0, "tokens": 0}
        for start in tqdm(range(0, len(order), bs), desc="encoder scoring", disable=not progress,
                          unit="batch"):
            sel = order[start:start + bs]
            batch = {k: v.to(self.device) for k, v in collate([feats[i] for i in sel]).items()}
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
                logits = model(**batch).logits.float()
            out[sel] = torch.softmax(logits, dim=-1)[:, 1].double().cpu().numpy()
            stats["batches"] += 1
            stats["tokens"] += batch["attention_mask"].numel()
        self.last_score_stats = stats
        self.model.train(was_training)
        return out

    # -- persistence --------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Weights (or only the LoRA adapter + head), tokenizer and the config needed by :meth:`load`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory, state_dict=getattr(self, "_full_state_dict", None))
        self.tokenizer.save_pretrained(directory)
        write_meta(directory, self.kind, self.cfg.model_dump(), self.seed)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "CrossEncoder":
        from transformers import AutoModelForSequenceClassification

        from mlsearch_lib.models.offline import load_tokenizer

        directory = Path(directory)
        cfg, seed = read_meta(directory, cls.kind, EncoderConfig)
        self = cls.__new__(cls)
        self.cfg, self.seed = cfg, seed
        self.device = default_device()
        self.tokenizer = load_tokenizer(directory)
        if (directory / "adapter_config.json").is_file():
            from peft import PeftModel

            from mlsearch_lib.models.offline import resolve_model

            base = AutoModelForSequenceClassification.from_pretrained(resolve_model(cfg.model), num_labels=2)
            self.model = PeftModel.from_pretrained(base, directory, is_trainable=True)
        else:
            self.model = AutoModelForSequenceClassification.from_pretrained(directory)
            if cfg.train_top_layers:
                self._freeze_below_top()
            elif cfg.freeze_embeddings:
                self.model.get_input_embeddings().weight.requires_grad_(False)
        self.model.to(self.device).eval()
        return self


class _TopStack(torch.nn.Module):
    """The top ``n`` layers, pooler and head of a BERT-like classifier, fed cached hidden states.

    It holds the classifier's own modules (no copies): training it trains the full model, which
    then saves, loads and scores as usual. ``pooling="mean"`` feeds the head the masked mean of
    the top layer instead of the pooler's first-token vector (the pooler is then unused).
    """

    def __init__(self, model: torch.nn.Module, n: int, pooling: str = "cls"):
        super().__init__()
        self.pooling = pooling
        base = model.base_model
        layers = getattr(getattr(base, "encoder", None), "layer", None)
        if layers is None or getattr(base, "pooler", None) is None or n > len(layers):
            raise ValueError(f"train_top_layers={n} needs a BERT-like encoder with a pooler and >= {n} layers")
        self.layers = torch.nn.ModuleList(layers[len(layers) - n:])
        self.pooler, self.dropout, self.classifier = base.pooler, model.dropout, model.classifier

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> SequenceClassifierOutput:
        hidden = run_top(self.layers, hidden, attention_mask)
        pooled = mean_pool(hidden, attention_mask) if self.pooling == "mean" else self.pooler(hidden)
        return SequenceClassifierOutput(logits=self.classifier(self.dropout(pooled)))


# -- frozen lower layers once, trained top layers on their cached outputs (also the contrastive towers')


def lower_states(base: torch.nn.Module, n_low: int, key: tuple[Any, ...], items: Sequence[Any],
                 encode: Callable[[list[Any]], list[dict[str, list[int]]]], batch_size: int,
                 device: torch.device | str = "cpu", progress: bool = True) -> list[torch.Tensor]:
    """Each item's hidden states below layer ``n_low`` of ``base`` (a BERT-like model), computed
    once per process and ``key`` (:data:`LOWER_STATES`); ``encode`` gives the items' token ids.

    Batches hold inputs of one token length (:func:`~mlsearch_lib.features.embeddings.length_batches`),
    so an item's states do not depend on its batch mates.
    """
    store = LOWER_STATES.setdefault(key, {})
    missing = [x for x in dict.fromkeys(items) if x not in store]
    if missing:
        enc = encode(missing)
        was_training = base.training
        base.eval()
        with torch.no_grad():
            for sel in tqdm(length_batches([len(e["input_ids"]) for e in enc], batch_size), desc="frozen lower layers",
                            disable=not progress, leave=False, unit="batch"):
                inputs = {k: torch.tensor([enc[i][k] for i in sel], device=device)
                          for k in ("input_ids", "token_type_ids") if k in enc[0]}
                hidden = _run_layers(base.encoder.layer[:n_low], base.embeddings(**inputs))
                for j, i in enumerate(sel):
                    store[missing[i]] = hidden[j].to("cpu", copy=True)  # not a view that keeps its batch alive
        base.train(was_training)
    return [store[x] for x in items]


def pad_states(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached hidden states right-padded into one batch, and its attention mask."""
    hidden = torch.zeros(len(states), max(len(s) for s in states), states[0].shape[-1])
    mask = torch.zeros(hidden.shape[:2], dtype=torch.long)
    for j, s in enumerate(states):
        hidden[j, :len(s)], mask[j, :len(s)] = s, 1
    return hidden, mask


def run_top(layers: Sequence[torch.nn.Module], hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A padded batch through the top ``layers``, the pads kept out of attention."""
    return _run_layers(layers, hidden, (1 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean over each row's real tokens (e5's own pooling)."""
    keep = mask[..., None].to(hidden.dtype)
    return (hidden * keep).sum(1) / keep.sum(1).clamp(min=1.0)


def _run_layers(layers: Sequence[torch.nn.Module], hidden: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``hidden`` through BERT layers (which return a tensor or a 1-tuple, by transformers version)."""
    for layer in layers:
        out = layer(hidden, attention_mask=attention_mask)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


class _WeightedTrainer(Trainer):
    """Trainer whose loss is the row-weighted cross-entropy of the 2-class logits (against soft
    ``target`` probabilities when the batch has them)."""

    loss_is_scaled_for_ga = False  # compute_loss gives a micro-batch mean: the Trainer divides by grad_accum

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
        inputs = dict(inputs)
        labels, weight, target = inputs.pop("labels"), inputs.pop("weight", None), inputs.pop("target", None)
        outputs = model(**inputs)
        loss = weighted_cross_entropy(outputs.logits, labels, weight, target)
        return (loss, {"logits": outputs.logits}) if return_outputs else loss


def _reinit_empty_pooler(model: torch.nn.Module) -> None:
    """Give an all-zero BERT pooler a normal random init.

    The offline e5 copy has no pooler (e5 mean-pools), stored as zeros. With a zero pooler the
    classifier sees a constant and *no gradient reaches the encoder* until the pooler has grown,
    so fine-tuning would barely move the backbone.
    """
    pooler = getattr(getattr(model, "base_model", None), "pooler", None)
    dense = getattr(pooler, "dense", None)
    if isinstance(dense, torch.nn.Linear) and not dense.weight.detach().any():
        std = float(getattr(model.config, "initializer_range", 0.02))
        with torch.no_grad():
            dense.weight.normal_(0.0, std)
            dense.bias.zero_()
        log.info("pooler weights were all zero: re-initialised (std %.3f)", std)
