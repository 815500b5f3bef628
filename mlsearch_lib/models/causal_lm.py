"""Causal-LM backbone: p(yes) for a prompt from the answer-token logits, with LoRA fine-tuning.

Same interface as :class:`mlsearch_lib.models.encoder.CrossEncoder`, but the inputs are
:class:`~mlsearch_lib.features.prompts.Prompt` objects (``prefix`` shared by many rows + row ``body``).

Design choices, all about skipping work a 2-core CPU cannot afford:

* **Two vocabulary rows, not 262k.** The answer is one token, "yes" or "no". Scoring and training
  read the final hidden state at the last prompt token and multiply it with only the two
  ``lm_head`` rows of those tokens (:func:`two_token_logits`); p(yes) is the softmax over those
  two logits. The full-vocabulary projection (262k x 640 per position) is never computed.
* **Loss = 2-class cross-entropy at the answer position.** The training example is the prompt
  followed by the answer token; the loss is on the answer token only, restricted to {no, yes}
  (weighted by row weights). The answer token itself need not be fed: its prediction comes from
  the position before it, so the input is the prompt alone. Training runs the model's own
  ``forward`` (so DDP and FSDP wrappers see every step) and projects only each row's last real
  position (``logits_to_keep``): one vocabulary row per example, small next to the decoder.
* **Prefix KV cache when scoring.** Prompts are grouped by ``prefix``; each distinct prefix is
  encoded once and its ``DynamicCache`` copied per batch, so only the bodies are run; a batch
  holds bodies of nearly one length (``llm.pad_slack``), so few pads are run either. Prefix and
  body are tokenised separately everywhere (training, scoring with and without the cache), so the
  token sequences are identical on every path.
* **Right padding** in training and scoring: a causal model never attends to pads after a real
  token, so the hidden state at each row's last real token is exact (left padding would shift
  positions).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer

from mlsearch_lib.config.hardware import default_device
from mlsearch_lib.config.profiles import LLMConfig
from mlsearch_lib.config.progress import tqdm
from mlsearch_lib.config.seeds import seed_everything
from mlsearch_lib.features.embeddings import length_batches
from mlsearch_lib.features.prompts import Prompt
from mlsearch_lib.models import engines
from mlsearch_lib.models.answer_head import answer_rows, answer_token_ids, run_decoder, two_token_logits, unwrap
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

class CausalLMScorer:
    """p(yes | prompt) from a causal LM (LoRA-tunable); fit / predict_proba / save / load."""

    kind = "llm"

    def __init__(self, cfg: LLMConfig, seed: int, random_weights: bool = False):
        """``random_weights``: build the architecture from ``config.json`` with seeded random
        weights instead of reading a checkpoint, for throughput and memory measurements of a model
        whose weights cannot be fetched (``bench gpu --random-weights``); its p(yes) mean nothing."""
        from mlsearch_lib.models.offline import load_tokenizer, resolve_model

        self.cfg, self.seed, self.random_weights = cfg, seed, random_weights
        self.device = default_device()
        path = resolve_model(cfg.model)
        seed_everything(seed)
        self.tokenizer = load_tokenizer(path)
        self.model = self._load_base(path)
        self.answer_ids = self._answer_token_ids()  # (no, yes): class 0, class 1
        self._prefix_ids: dict[str, list[int]] = {}
        self.last_score_stats: dict[str, int] = {}

    def _load_base(self, path: Path) -> torch.nn.Module:
        from transformers import AutoModelForCausalLM

        dtype = torch.bfloat16 if self.cfg.bf16 else torch.float32
        kwargs: dict[str, Any] = {"dtype": dtype}
        if self.random_weights:
            if self.cfg.load_in_4bit:
                raise ValueError("random_weights builds bf16/fp32 weights in place; 4-bit loading quantises "
                                 "a checkpoint, so it needs real weights")
            from transformers import AutoConfig

            with torch.device(self.device):  # initialised where they run: 14B params in seconds on a GPU
                model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), **kwargs)
            return model.eval()
        if self.cfg.load_in_4bit:  # bitsandbytes (>= 0.48) quantises on CPU as well as CUDA
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
            kwargs["device_map"] = {"": str(self.device)}
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        if not self.cfg.load_in_4bit and not _fsdp_launch():  # under FSDP the wrapper places the shards
            model.to(self.device)
        return model.eval()

    def _answer_token_ids(self) -> tuple[int, int]:
        return answer_token_ids(self.tokenizer, self.cfg.model)

    # -- tokens -------------------------------------------------------------------------------
    def _prefix(self, prefix: str) -> list[int]:
        ids = self._prefix_ids.get(prefix)
        if ids is None:
            bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
            ids = bos + self.tokenizer(prefix, add_special_tokens=False).input_ids if prefix else bos
            budget = (self.cfg.cutoff_len - 1) // 2  # a prefix keeps at most half the budget
            if len(ids) > budget:
                ids = ids[:len(bos)] + ids[len(ids) - (budget - len(bos)):]
            self._prefix_ids[prefix] = ids
        return ids

    def _encode(self, prompts: Sequence[Prompt]) -> list[tuple[list[int], list[int]]]:
        """(prefix ids, body ids) per prompt; the body is cut on its left to fit ``cutoff_len``.

        One position is reserved for the answer token, which therefore is never cut.
        """
        bodies = self.tokenizer([p.body for p in prompts], add_special_tokens=False).input_ids
        out = []
        for prompt, body in zip(prompts, bodies):
            pre = self._prefix(prompt.prefix)
            room = self.cfg.cutoff_len - 1 - len(pre)
            out.append((pre, body[-room:] if len(body) > room else body))
        return out

    def _pad(self, seqs: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=self.device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=self.device)
        return ids, mask

    def _collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids, mask = self._pad([f["input_ids"] for f in features])
        return {"input_ids": ids.cpu(), "attention_mask": mask.cpu(),
                "labels": torch.tensor([f["labels"] for f in features], dtype=torch.long),
                "weight": torch.tensor([f["weight"] for f in features], dtype=torch.float32)}

    def answer_logits(self, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      cache: Any = None) -> torch.Tensor:
        """[no, yes] logits at each row's last real token (right-padded rows, after ``cache`` if given)."""
        states, _ = run_decoder(model, cache, input_ids=input_ids, attention_mask=attention_mask)
        body_mask = attention_mask[:, -input_ids.shape[1]:]
        last = body_mask.sum(dim=1) - 1
        hidden = states[torch.arange(len(last), device=last.device), last]
        base = unwrap(model)
        rows = answer_rows(base.get_output_embeddings(), self.answer_ids)
        return two_token_logits(hidden, rows, (0, 1), getattr(base.config, "final_logit_softcapping", None))

    def train_logits(self, model: torch.nn.Module, input_ids: torch.Tensor,
                     attention_mask: torch.Tensor) -> torch.Tensor:
        """[no, yes] logits from ``model``'s own forward, as training needs them.

        Going through ``forward`` (not the decoder inside it, as :meth:`answer_logits` does) keeps
        DDP's gradient hooks and FSDP's parameter gathering in the loop and applies a LoRA on
        ``lm_head``. ``logits_to_keep`` projects only the rows' last real positions: a 1-D tensor
        keeps those positions in every row (b x b of them, read on the diagonal), which every
        transformers 5.x reads alike; a per-row ``(b, 1)`` tensor is per-row positions only in
        recent releases (5.25 here), while 5.17 (the H200's) indexed it as shared positions.
        """
        last = attention_mask.sum(dim=1) - 1
        out = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=last, use_cache=False)
        rows = torch.arange(len(last), device=out.logits.device)
        return out.logits[rows, rows][:, list(self.answer_ids)].float()

    # -- training -----------------------------------------------------------------------------
    def _wrap_lora(self) -> None:
        from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training

        if hasattr(self.model, "peft_config"):
            return
        seed_everything(self.seed)  # LoRA A matrices
        if self.cfg.load_in_4bit:
            self.model = prepare_model_for_kbit_training(self.model, use_gradient_checkpointing=False)
        config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=self.cfg.lora_r, lora_alpha=self.cfg.lora_alpha,
                            lora_dropout=self.cfg.lora_dropout, target_modules=list(self.cfg.target_modules),
                            bias="none")
        self.model = get_peft_model(self.model, config)

    def fit(self, prompts: Sequence[Prompt], labels: np.ndarray, weights: np.ndarray | None = None,
            output_dir: Path | None = None, eval_prompts: Sequence[Prompt] | None = None,
            eval_labels: np.ndarray | None = None, *, max_steps: int | None = None,
            save_steps: int = 25) -> dict[str, Any]:
        """LoRA-tune on ``prompts``; with ``output_dir`` checkpoint (the adapter) and resume.

        Returns the same dict as :meth:`CrossEncoder.fit <mlsearch_lib.models.encoder.CrossEncoder.fit>`.
        """
        labels = np.asarray(labels, dtype=np.int64)
        idx = cap_rows(labels, self.cfg.max_train_rows, self.seed)
        w = normalised_weights(weights, len(labels))
        chosen = [prompts[i] for i in idx]
        rows = [{"input_ids": pre + body, "labels": int(labels[i]), "weight": float(w[i])}
                for (pre, body), i in zip(self._encode(chosen), idx)]
        tag = fit_fingerprint([(p.prefix, p.body) for p in chosen], labels[idx], w[idx],
                              self.cfg.model_dump(), self.seed)
        self._wrap_lora()
        evaluate = None
        if eval_prompts is not None and eval_labels is not None:
            evaluate = lambda: self.predict_proba(eval_prompts, progress=False, engine="transformers")  # noqa: E731
        hp = dict(lr=self.cfg.lr, weight_decay=0.0, warmup_ratio=self.cfg.warmup_ratio, epochs=self.cfg.epochs,
                  batch_size=self.cfg.batch_size, grad_accum=self.cfg.grad_accum, scheduler=self.cfg.scheduler,
                  bf16=self.cfg.bf16, gradient_checkpointing=self.cfg.gradient_checkpointing)
        if torch.cuda.is_available():  # memory plan: fail now, saying what to change, not with an OOM mid-epoch
            from mlsearch_lib.models.memory_plan import check_config

            check_config(self.cfg, self.device, unwrap(self.model).config.to_dict(), world_size=_world_size(),
                         fsdp=_fsdp_launch(), profile=getattr(self, "profile_name", None))
        trainer_cls = type("_AnswerTokenTrainer", (_AnswerTokenTrainer,), {"scorer": self})
        result = run_trainer(trainer_cls, self.model, rows, self._collate, hp, self.seed, output_dir, tag,
                             max_steps=max_steps, save_steps=save_steps, evaluate=evaluate, eval_labels=eval_labels)
        self._full_state_dict = result.pop("full_state_dict", None)  # FSDP only: gathered for save()
        return result

    # -- scoring ------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_proba(self, prompts: Sequence[Prompt], use_prefix_cache: bool = True,
                      batch_size: int | None = None, progress: bool = True, engine: str | None = None) -> np.ndarray:
        """p(yes) per prompt (float64, input order), one forward pass per batch.

        With ``use_prefix_cache`` each distinct prefix is run once and only bodies are run per
        batch. ``last_score_stats`` records rows, batches and tokens processed (pads included).
        ``engine`` (default: the profile's ``llm.engine``) ``"vllm"`` hands the same token ids to
        :mod:`mlsearch_lib.models.vllm_engine` (the optional gpu extra) through :mod:`mlsearch_lib.models.engines`.
        """
        name = engine or self.cfg.engine
        if name != "transformers":  # an optional engine (vllm: the gpu extra) scores the same token ids
            scorer = engines.engine(name, "scorer")(self)
            return scorer.score_token_ids([pre + body for pre, body in self._encode(prompts)])
        was_training = self.model.training
        self.model.eval()
        bs = batch_size or self.cfg.score_batch_size
        enc = self._encode(prompts)
        out = np.empty(len(enc), dtype=np.float64)
        stats = {"rows": len(enc), "batches": 0, "tokens": 0, "prefix_tokens": 0}
        if use_prefix_cache:
            groups: dict[tuple[int, ...], list[int]] = {}
            for i, (pre, _) in enumerate(enc):
                groups.setdefault(tuple(pre), []).append(i)
            plan = [(pre, [members[j] for j in batch]) for pre, members in groups.items()
                    for batch in length_batches([len(enc[i][1]) for i in members], bs, self.cfg.pad_slack)]
            cache_of: dict[tuple[int, ...], Any] = {}
            for pre, sel in tqdm(plan, desc="LLM scoring (prefix cache)", disable=not progress, unit="batch"):
                if pre not in cache_of:
                    cache_of.clear()  # groups are contiguous in the plan: keep one cache alive
                    ids = torch.tensor([list(pre)], device=self.device)
                    cache_of[pre] = run_decoder(self.model, input_ids=ids, want_cache=True)[1]
                    stats["prefix_tokens"] += len(pre)
                    stats["tokens"] += len(pre)
                cache = copy.deepcopy(cache_of[pre])  # the forward appends the bodies to it
                cache.batch_repeat_interleave(len(sel))
                body_ids, body_mask = self._pad([enc[i][1] for i in sel])
                mask = torch.cat([torch.ones(len(sel), len(pre), dtype=body_mask.dtype, device=self.device),
                                  body_mask], dim=1)
                logits = self.answer_logits(self.model, body_ids, mask, cache=cache)
                out[sel] = torch.softmax(logits, dim=-1)[:, 1].double().cpu().numpy()
                stats["batches"] += 1
                stats["tokens"] += body_ids.numel()
        else:
            batches = length_batches([len(pre) + len(body) for pre, body in enc], bs, self.cfg.pad_slack)
            for sel in tqdm(batches, desc="LLM scoring", disable=not progress, unit="batch"):
                ids, mask = self._pad([enc[i][0] + enc[i][1] for i in sel])
                logits = self.answer_logits(self.model, ids, mask)
                out[sel] = torch.softmax(logits, dim=-1)[:, 1].double().cpu().numpy()
                stats["batches"] += 1
                stats["tokens"] += ids.numel()
        self.last_score_stats = stats
        self.model.train(was_training)
        return out

    @torch.inference_mode()
    def generate_answers(self, prompts: Sequence[Prompt], max_new_tokens: int = 5, temperature: float = 0.15,
                         batch_size: int | None = None, progress: bool = True) -> list[str]:
        """The seed's way: sampled generation (seeded), decoded text after the prompt, per prompt.

        Kept for the benchmark against :meth:`predict_proba`; rows are left-padded as
        ``generate`` requires.
        """
        self.model.eval()
        bs = batch_size or self.cfg.score_batch_size
        enc = [pre + body for pre, body in self._encode(prompts)]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        torch.manual_seed(self.seed)
        answers: list[str] = []
        tokens = new_tokens = 0
        for s in tqdm(range(0, len(enc), bs), desc="LLM generation", disable=not progress, unit="batch"):
            seqs = enc[s:s + bs]
            width = max(map(len, seqs))
            ids = torch.tensor([[pad] * (width - len(x)) + x for x in seqs], device=self.device)
            mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in seqs], device=self.device)
            gen = self.model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=temperature,
                                      max_new_tokens=max_new_tokens, pad_token_id=pad)
            new = gen[:, width:]
            tokens += ids.numel() + new.numel()  # every step runs all rows, finished ones too
            new_tokens += new.numel()
            answers += self.tokenizer.batch_decode(new, skip_special_tokens=True)
        self.last_score_stats = {"rows": len(enc), "tokens": tokens, "new_tokens": new_tokens}
        return answers

    # -- persistence --------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """The LoRA adapter (when trained), tokenizer and config; the base model is resolved on load."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if hasattr(self.model, "peft_config"):
            # save_embedding_layers=False: a LoRA on lm_head must not copy the frozen V x h head into the adapter
            self.model.save_pretrained(directory, state_dict=getattr(self, "_full_state_dict", None),
                                       save_embedding_layers=False)
        self.tokenizer.save_pretrained(directory)
        write_meta(directory, self.kind, self.cfg.model_dump(), self.seed)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "CausalLMScorer":
        directory = Path(directory)
        cfg, seed = read_meta(directory, cls.kind, LLMConfig)
        self = cls(cfg, seed)
        if (directory / "adapter_config.json").is_file():
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, directory, is_trainable=True)
        self.model.eval()
        return self


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _fsdp_launch() -> bool:
    """Launched by ``accelerate launch`` with an FSDP config (it sets this variable)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "").strip().lower() in {"1", "true", "yes"}


class _AnswerTokenTrainer(Trainer):
    """Trainer whose loss is the weighted 2-class ({no, yes}) cross-entropy at the answer position."""

    scorer: CausalLMScorer  # set by CausalLMScorer.fit
    loss_is_scaled_for_ga = False  # compute_loss gives a micro-batch mean: the Trainer divides by grad_accum

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
        logits = self.scorer.train_logits(model, inputs["input_ids"], inputs["attention_mask"])
        loss = weighted_cross_entropy(logits, inputs["labels"], inputs.get("weight"))
        return (loss, {"logits": logits}) if return_outputs else loss

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """A checkpoint holds the adapter alone. With ``lm_head`` a LoRA target, peft's default
        (``save_embedding_layers="auto"``) copies the frozen V x h head into every checkpoint:
        1.56 GB for Qwen2.5-14B each ``save_steps``, as :meth:`CausalLMScorer.save` already avoids."""
        if not hasattr(self.model, "peft_config"):
            return super()._save(output_dir, state_dict)
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        self.model.save_pretrained(output_dir, state_dict=state_dict, save_embedding_layers=False)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))  # as Trainer._save does
