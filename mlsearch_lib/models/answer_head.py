"""The decoder's last hidden states and the two answer tokens' logits, without the vocabulary
projection: what LoRA training, transformers scoring and the vLLM engine share, so every path
reads the same two tokens after the same cue."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from mlsearch_lib.features.prompts import ANSWERS

#: The text before the answer in every template body; the answer tokens are looked up after it.
RESPONSE_CUE = "### Response:\n"

def two_token_logits(hidden: torch.Tensor, out_weight: torch.Tensor, token_ids: Sequence[int],
                     softcap: float | None = None) -> torch.Tensor:
    """Logits of ``token_ids`` only: ``hidden @ W[token_ids].T`` (plus the model's soft-capping).

    Equal to ``lm_head(hidden)[..., token_ids]`` at a cost of 2 rows instead of the vocabulary,
    but computed in float32: only the difference of the two logits matters, and a bf16 logit near
    20 is rounded to a multiple of 0.125, which alone moves p(yes) by up to 0.03 (and the cached
    and uncached paths, rounding different hidden states, by twice that).
    """
    rows = out_weight[list(token_ids)].float()
    logits = hidden.float() @ rows.T
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


def answer_token_ids(tokenizer: Any, name: str = "") -> tuple[int, int]:
    """Ids of the single tokens ``tokenizer`` gives for "no" / "yes" after :data:`RESPONSE_CUE`.

    Shared by every scoring engine (:mod:`mlsearch_lib.models.vllm_engine` too), so all read the same two.
    """
    cue = tokenizer(RESPONSE_CUE, add_special_tokens=False).input_ids
    for space in ("", " "):
        ids = []
        for answer in (ANSWERS[0], ANSWERS[1]):
            full = tokenizer(RESPONSE_CUE + space + answer, add_special_tokens=False).input_ids
            if full[:len(cue)] == cue and len(full) == len(cue) + 1:
                ids.append(full[-1])
        if len(ids) == 2:
            return ids[0], ids[1]
    raise AssertionError(f"{name or 'tokenizer'}: 'yes'/'no' are not single tokens after {RESPONSE_CUE!r}")


def answer_rows(head: torch.nn.Module, token_ids: Sequence[int]) -> torch.Tensor:
    """Rows ``token_ids`` of the output projection ``head``, LoRA delta included when it is adapted.

    With ``lm_head`` among the LoRA targets (the seed's setup) the head is a peft LoRA layer whose
    ``weight`` is the frozen base weight only; the effective rows are ``W[ids] + s * B[ids] @ A``.
    """
    ids = list(token_ids)
    rows = getattr(head, "base_layer", head).weight[ids]
    lora_a = getattr(head, "lora_A", None)
    if lora_a is None or getattr(head, "merged", False) or getattr(head, "disable_adapters", False):
        return rows
    for name in head.active_adapters:
        if name in lora_a:
            delta = head.lora_B[name].weight[ids] @ lora_a[name].weight
            rows = rows + (head.scaling[name] * delta).to(rows.dtype)
    return rows


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a peft wrapper (LoRA layers are injected in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder(model: torch.nn.Module) -> torch.nn.Module:
    base = unwrap(model)
    get = getattr(base, "get_decoder", None)
    dec = get() if callable(get) else None
    return dec if dec is not None else base.model


def run_decoder(model: torch.nn.Module, cache: Any = None, want_cache: bool = False,
                 **inputs: Any) -> tuple[torch.Tensor, Any]:
    """(last hidden states, KV cache) from the decoder stack; no vocabulary projection.

    transformers 5.x names the KV-cache argument and output ``cache`` (``past_key_values``
    before, now a deprecated alias): use whichever this version's forward declares.
    """
    dec = decoder(model)
    name = "cache" if "cache" in inspect.signature(dec.forward).parameters else "past_key_values"
    out = dec(**inputs, **{name: cache}, use_cache=want_cache or cache is not None)
    return out.last_hidden_state, getattr(out, name, None)
