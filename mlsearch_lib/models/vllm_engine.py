"""vLLM engine for generation and one-token p(yes) scoring: optional, imported only when used.

vLLM (and a CUDA GPU) come with the ``gpu`` extra: ``pip install -e '.[gpu]'``. Nothing here
imports vllm at module level, so the rest of the book never needs it; a missing vllm raises
:class:`VLLMUnavailable`, which names the extra.

* :class:`VLLMGenerator` — ``generate(prompts, params) -> texts``, the interface of
  :class:`mlsearch_lib.features.generation.TransformersGenerator`; ``params`` is any object with
  ``max_new_tokens``, ``temperature``, ``top_p``, ``seed`` (and optionally ``stop``). Every row is
  sampled with its own seed, drawn from (``params.seed``, prompt), so a row's text does not
  depend on the rows batched with it.
* :class:`VLLMScorer` — p(yes) per prompt from the next-token log-probabilities of the "yes" and
  "no" tokens (softmax over the two, as :mod:`mlsearch_lib.models.causal_lm` does with two logits),
  one generated token per row, with automatic prefix caching: the shared instruction + examples
  + guidelines block is computed once per engine, not once per row. Prompts given as
  :class:`~mlsearch_lib.features.prompts.Prompt` are tokenised exactly like the transformers scorer
  (BOS + prefix + body, cut to ``cutoff_len``), so both engines see the same token ids.
* :func:`merge_adapter` — a trained LoRA adapter (``lm_head`` included) merged into full weights,
  the form vLLM serves with prefix caching; :func:`vllm_scorer_for` does it for a
  :class:`~mlsearch_lib.models.causal_lm.CausalLMScorer` whose profile says ``llm.engine: vllm``.

The pieces that need no GPU (token selection, the two-way softmax from a log-prob dict, the
sampling settings) are plain functions, unit-tested on CPU.
"""

from __future__ import annotations

import hashlib
import logging
import math
import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlsearch_lib.features.generation import row_seed  # one seed per (seed, prompt), as the transformers engine

log = logging.getLogger(__name__)

GPU_EXTRA = ("vllm is not installed: it is part of the optional `gpu` extra "
             "(pip install -e '.[gpu]' on a machine with a CUDA GPU). Without it use "
             "engine: transformers (the default), which runs everywhere.")
#: Log-probs returned per row when scoring; vLLM's default ceiling (max_logprobs) is 20.
SCORE_LOGPROBS = 20


class VLLMUnavailable(ImportError):
    """vllm cannot be imported; the message names the optional ``gpu`` extra."""


def require_vllm() -> Any:
    """The ``vllm`` module, or :class:`VLLMUnavailable` naming the extra to install."""
    try:
        import vllm
    except ImportError as exc:
        raise VLLMUnavailable(f"{GPU_EXTRA} ({type(exc).__name__}: {exc})") from exc
    return vllm


# ============================================================== pure pieces (tested on CPU)


def generation_kwargs(params: Any, prompt: str) -> dict[str, Any]:
    """``vllm.SamplingParams`` arguments for one row of ``params`` (any object with the fields)."""
    temperature = float(params.temperature)
    kwargs: dict[str, Any] = {"max_tokens": int(params.max_new_tokens), "temperature": temperature,
                              "top_p": float(params.top_p) if temperature > 0 else 1.0}
    if temperature > 0 and getattr(params, "seed", None) is not None:
        kwargs["seed"] = row_seed(int(params.seed), prompt)
    stop = getattr(params, "stop", None)
    if stop:
        kwargs.update(stop=[stop], include_stop_str_in_output=True)  # like generation._cut_at_stop
    return kwargs


def scoring_kwargs(answer_ids: tuple[int, int], logprobs: int = SCORE_LOGPROBS) -> dict[str, Any]:
    """``vllm.SamplingParams`` arguments for scoring: one greedy token, restricted to (no, yes),
    with the top ``logprobs`` next-token log-probabilities returned."""
    no, yes = answer_ids
    return {"max_tokens": 1, "temperature": 0.0, "logprobs": logprobs, "allowed_token_ids": [no, yes]}


def _logprob_value(entry: Any) -> float:
    """vLLM returns ``Logprob`` objects (``.logprob``); plain floats are accepted too."""
    return float(getattr(entry, "logprob", entry))


def p_yes_from_logprobs(logprobs: Mapping[int, Any], answer_ids: tuple[int, int]) -> float:
    """p(yes) = softmax over the log-probs of the (no, yes) tokens in one next-token dict.

    The normaliser of the full vocabulary cancels, so raw (full-vocabulary) and processed
    (restricted to the two tokens) log-probs give the same value. A token missing from the dict
    (vLLM returned only the top-k and the sampled token) has at most the smallest log-prob
    returned: that bound is used, so p(yes) is then a bound at the extreme end (<= or >= 1 - tiny).
    """
    no, yes = answer_ids
    values = {int(k): _logprob_value(v) for k, v in logprobs.items()}
    if no not in values and yes not in values:
        raise ValueError(f"neither answer token ({no}, {yes}) among the returned log-probs {sorted(values)}")
    floor = min(values.values())
    lp_no, lp_yes = values.get(no, floor), values.get(yes, floor)
    if not (math.isfinite(lp_no) or math.isfinite(lp_yes)):
        return 0.5
    return float(1.0 / (1.0 + math.exp(min(700.0, max(-700.0, lp_no - lp_yes)))))


def _prompt_token_ids(tokenizer: Any, prompts: Sequence[Any], cutoff_len: int) -> list[list[int]]:
    """Token ids of :class:`~mlsearch_lib.features.prompts.Prompt` objects, exactly as the transformers
    scorer builds them (its own ``_encode``, run without loading a model)."""
    from mlsearch_lib.config.profiles import LLMConfig
    from mlsearch_lib.models.causal_lm import CausalLMScorer

    enc = CausalLMScorer.__new__(CausalLMScorer)
    enc.tokenizer, enc.cfg, enc._prefix_ids = tokenizer, LLMConfig(cutoff_len=cutoff_len), {}
    return [pre + body for pre, body in enc._encode(list(prompts))]


# ============================================================================ the engines


def make_llm(model: str | Path, tensor_parallel_size: int = 1, enable_prefix_caching: bool = True,
             dtype: str = "auto", seed: int = 0, gpu_memory_utilization: float = 0.9,
             max_model_len: int | None = None, **engine_kwargs: Any) -> Any:
    """A ``vllm.LLM`` on ``model`` (a hub id or a local directory, resolved offline first).

    Asks for *processed* log-probs (after the ``allowed_token_ids`` mask) where this vLLM
    version knows the setting, so both answer tokens always come back when scoring.
    """
    vllm = require_vllm()
    from mlsearch_lib.models.offline import resolve_model

    kwargs = dict(model=str(resolve_model(model)), tensor_parallel_size=tensor_parallel_size,
                  enable_prefix_caching=enable_prefix_caching, dtype=dtype, seed=seed,
                  gpu_memory_utilization=gpu_memory_utilization, **engine_kwargs)
    if max_model_len:
        kwargs["max_model_len"] = max_model_len
    try:
        return vllm.LLM(logprobs_mode="processed_logprobs", **kwargs)
    except TypeError:  # an older vLLM without logprobs_mode: raw log-probs, same two-way softmax
        return vllm.LLM(**kwargs)


class VLLMGenerator:
    """``generate(prompts, params) -> texts`` on vLLM (see the module docstring)."""

    def __init__(self, model_id: str, tensor_parallel_size: int = 1, enable_prefix_caching: bool = True,
                 llm: Any = None, **engine_kwargs: Any):
        self.model_id = str(model_id)
        self.llm = llm if llm is not None else make_llm(model_id, tensor_parallel_size, enable_prefix_caching,
                                                        **engine_kwargs)

    def generate(self, prompts: Sequence[str], params: Any) -> list[str]:
        vllm = require_vllm()
        sampling = [vllm.SamplingParams(**generation_kwargs(params, p)) for p in prompts]
        outs = self.llm.generate(list(prompts), sampling, use_tqdm=False)
        return [o.outputs[0].text for o in outs]


class VLLMScorer:
    """p(yes) per prompt from vLLM's next-token log-probs of "yes"/"no" (see the module docstring)."""

    def __init__(self, model_id: str, tensor_parallel_size: int = 1, enable_prefix_caching: bool = True,
                 cutoff_len: int = 1024, llm: Any = None, **engine_kwargs: Any):
        from mlsearch_lib.models.answer_head import answer_token_ids
        from mlsearch_lib.models.offline import load_tokenizer

        if llm is None:
            require_vllm()  # fail before loading anything
        self.model_id, self.cutoff_len = str(model_id), cutoff_len
        self.tokenizer = load_tokenizer(model_id)
        self.answer_ids = answer_token_ids(self.tokenizer, self.model_id)  # (no, yes)
        engine_kwargs.setdefault("max_model_len", cutoff_len + 8)
        self.llm = llm if llm is not None else make_llm(model_id, tensor_parallel_size, enable_prefix_caching,
                                                        **engine_kwargs)
        self.last_score_stats: dict[str, Any] = {}

    @classmethod
    def from_config(cls, cfg: Any, model: str | Path | None = None, **engine_kwargs: Any) -> "VLLMScorer":
        """From a profile's ``llm`` section: its model (or ``model``, e.g. merged weights),
        ``tensor_parallel_size``, ``cutoff_len``, and bf16/fp32 as ``llm.bf16`` says."""
        engine_kwargs.setdefault("dtype", "bfloat16" if cfg.bf16 else "float32")
        return cls(str(model or cfg.model), tensor_parallel_size=cfg.tensor_parallel_size,
                   cutoff_len=cfg.cutoff_len, **engine_kwargs)

    def score_token_ids(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """p(yes) (float64, input order) for prompts given as token ids."""
        vllm = require_vllm()
        sampling = vllm.SamplingParams(**scoring_kwargs(self.answer_ids))
        outs = self.llm.generate([{"prompt_token_ids": list(ids)} for ids in token_ids], sampling, use_tqdm=False)
        p = np.array([p_yes_from_logprobs(o.outputs[0].logprobs[0], self.answer_ids) for o in outs], dtype=np.float64)
        self.last_score_stats = {"rows": len(p), "tokens": int(sum(len(ids) for ids in token_ids))}
        return p

    def score(self, prompts: Sequence[Any]) -> np.ndarray:
        """p(yes) for :class:`~mlsearch_lib.features.prompts.Prompt` objects (tokenised like the transformers
        scorer) or plain strings (tokenised by the model's tokenizer, BOS included)."""
        if all(hasattr(p, "prefix") and hasattr(p, "body") for p in prompts):
            ids = _prompt_token_ids(self.tokenizer, prompts, self.cutoff_len)
        else:
            ids = [self.tokenizer(str(p)).input_ids[-self.cutoff_len:] for p in prompts]
        return self.score_token_ids(ids)


# ====================================================================== adapters -> vLLM


def merge_adapter(backbone_dir: str | Path, out_dir: str | Path, dtype: Any = None) -> Path:
    """Merge a saved :class:`~mlsearch_lib.models.causal_lm.CausalLMScorer` LoRA adapter into its base
    model's weights and save a plain model (+ tokenizer) vLLM can serve. Runs on CPU.

    ``dtype``: default bf16 when the adapter's config says ``bf16``, else fp32. For
    Qwen2.5-14B in bf16 this needs ~30 GB of CPU memory and as much disk.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mlsearch_lib.config.profiles import LLMConfig
    from mlsearch_lib.models.offline import resolve_model
    from mlsearch_lib.models.trainer import read_meta

    backbone_dir, out_dir = Path(backbone_dir), Path(out_dir)
    cfg, _ = read_meta(backbone_dir, "llm", LLMConfig)
    dtype = dtype or (torch.bfloat16 if cfg.bf16 else torch.float32)
    base = AutoModelForCausalLM.from_pretrained(resolve_model(cfg.model), dtype=dtype)
    if (backbone_dir / "adapter_config.json").is_file():
        base = PeftModel.from_pretrained(base, backbone_dir).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    base.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(backbone_dir).save_pretrained(out_dir)
    log.info("merged %s into %s", backbone_dir, out_dir)
    return out_dir


def _free_memory_share(margin: float = 0.9) -> float:
    """The share of the GPU vLLM may take next to what this process already holds."""
    import torch

    free, total = torch.cuda.mem_get_info()
    return max(0.05, margin * free / total)


def adapter_fingerprint(model: Any) -> str:
    """A short hash of a model's LoRA weights ("" without an adapter): a served merge is reused
    only while the adapter it was built from is unchanged."""
    if not hasattr(model, "peft_config"):
        return ""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if "lora_" in name:
            h.update(name.encode())
            h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def vllm_scorer_for(scorer: Any) -> VLLMScorer:
    """A :class:`VLLMScorer` serving ``scorer``'s model (a trained adapter merged in first), built once
    per adapter state and kept on ``scorer``; uses the GPU memory the transformers model leaves free."""
    import torch

    state = adapter_fingerprint(scorer.model)
    cached = getattr(scorer, "_vllm_scorer", None)
    if cached is not None and cached[0] == state:
        return cached[1]
    model: str | Path = scorer.cfg.model
    tmp = None
    if state:
        tmp = Path(tempfile.mkdtemp(prefix="mlsearch-vllm-"))
        scorer.save(tmp / "adapter")
        model = merge_adapter(tmp / "adapter", tmp / "merged")
        shutil.rmtree(tmp / "adapter", ignore_errors=True)  # merged: the adapter copy is no longer needed
    kwargs = {"gpu_memory_utilization": _free_memory_share()} if torch.cuda.is_available() else {}
    vs = VLLMScorer.from_config(scorer.cfg, model=model, **kwargs)
    if cached is not None and cached[2] is not None:  # the merge of an older adapter state
        shutil.rmtree(cached[2], ignore_errors=True)
    if tmp is not None:  # removed with the scorer (or at exit), never left behind in /tmp
        weakref.finalize(scorer, shutil.rmtree, tmp, True)
    scorer._vllm_scorer = (state, vs, tmp)
    return vs
