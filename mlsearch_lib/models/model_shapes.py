"""What the memory arithmetic needs of a model: its shape, from a ``config.json`` at hand (a local
directory, the Hugging Face cache or the offline model cache; never the network), else from
:data:`KNOWN_MODELS`."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GIB = 1024 ** 3


@dataclass(frozen=True)
class ModelShape:
    """What the memory arithmetic needs from a model's ``config.json``."""

    model_id: str
    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    tie_embeddings: bool
    arch: str = "decoder"  # "decoder" (causal LM) or "encoder" (BERT-like)
    qkv_bias: bool = False
    max_positions: int = 0  # encoder only: position embeddings

    @classmethod
    def from_config(cls, config: dict[str, Any], model_id: str = "") -> "ModelShape":
        cfg = config.get("text_config") or config  # multimodal configs nest the language model
        heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        model_type = str(cfg.get("model_type") or config.get("model_type") or "")
        encoder = model_type in {"bert", "xlm-roberta", "roberta"}
        return cls(
            model_id=model_id or str(config.get("_name_or_path", "")), hidden=hidden,
            layers=int(cfg["num_hidden_layers"]), intermediate=int(cfg["intermediate_size"]),
            vocab=int(cfg["vocab_size"]), heads=heads, kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            tie_embeddings=bool(config.get("tie_word_embeddings", cfg.get("tie_word_embeddings", True))),
            arch="encoder" if encoder else "decoder",
            qkv_bias=bool(cfg.get("attention_bias", model_type.startswith("qwen2"))),
            max_positions=int(cfg.get("max_position_embeddings", 0)) if encoder else 0,
        )

    # ------------------------------------------------------------------ parameter counts
    @property
    def q(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer of one block, by the names LoRA targets use."""
        h, i = self.hidden, self.intermediate
        if self.arch == "encoder":
            return {"query": (h, h), "key": (h, h), "value": (h, h), "attention.output.dense": (h, h),
                    "intermediate.dense": (h, i), "output.dense": (i, h)}
        return {"q_proj": (h, self.q), "k_proj": (h, self.kv), "v_proj": (h, self.kv), "o_proj": (self.q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def embedding_params(self) -> int:
        """Token embeddings plus an untied output head (V x h each)."""
        n = self.vocab * self.hidden * (1 if self.tie_embeddings else 2)
        if self.arch == "encoder":
            n += (self.max_positions + 2) * self.hidden  # position and token-type embeddings
        return n

    def block_linear_params(self) -> int:
        """Weights of the linear layers of all blocks (what 4-bit quantisation compresses)."""
        return self.layers * sum(a * b for a, b in self.linear_shapes().values())

    def other_params(self) -> int:
        """Biases and norms (small)."""
        h = self.hidden
        per_layer = 2 * h  # two norms
        if self.qkv_bias:
            per_layer += self.q + 2 * self.kv
        if self.arch == "encoder":
            per_layer = 4 * h + 4 * h + self.intermediate + h  # 2 LayerNorms (w, b) + linear biases
            return self.layers * per_layer + 2 * h + h * (h + 1)  # embedding LayerNorm, pooler
        return self.layers * per_layer + h  # final norm

    def total_params(self) -> int:
        return self.embedding_params() + self.block_linear_params() + self.other_params()

    def lora_params(self, targets: list[str], r: int) -> int:
        """Trainable parameters of LoRA rank ``r`` on ``targets`` (module-name suffixes)."""
        n = 0
        for name, (a, b) in self.linear_shapes().items():
            if any(name == t or name.endswith(t) for t in targets):
                n += self.layers * r * (a + b)
        if "lm_head" in targets:
            n += r * (self.hidden + self.vocab)
        return n


def _qwen(model_id: str, hidden: int, layers: int, inter: int, vocab: int, heads: int, kv: int,
          tie: bool) -> ModelShape:
    return ModelShape(model_id, hidden, layers, inter, vocab, heads, kv, hidden // heads, tie, qkv_bias=True)


#: Shapes of the models the profiles and the seed's Table 3 name, for when no config.json is at
#: hand (values from each model's config.json on the hub).
KNOWN_MODELS: dict[str, ModelShape] = {m.model_id: m for m in (
    _qwen("Qwen/Qwen2.5-14B-Instruct", 5120, 48, 13824, 152064, 40, 8, tie=False),
    _qwen("Qwen/Qwen2.5-7B-Instruct", 3584, 28, 18944, 152064, 28, 4, tie=False),
    _qwen("Qwen/Qwen2.5-1.5B-Instruct", 1536, 28, 8960, 151936, 12, 2, tie=True),
    ModelShape("google/gemma-3-270m", 640, 18, 2048, 262144, 4, 1, 256, tie_embeddings=True),
    ModelShape("intfloat/multilingual-e5-small", 384, 12, 1536, 250037, 12, 12, 32, tie_embeddings=True,
               arch="encoder", max_positions=512),
)}


def model_shape(model_id: str) -> ModelShape:
    """Shape of ``model_id`` from a ``config.json`` found locally, else from :data:`KNOWN_MODELS`.

    Looks in: ``model_id`` as a directory, the Hugging Face cache, the offline model cache
    (:func:`mlsearch_lib.config.paths.model_cache_dir`). Never downloads; an ``mlsearch/`` tiny model
    is built on first use, as loading it would.
    """
    for path in _config_candidates(model_id):
        try:
            return ModelShape.from_config(json.loads(path.read_text(encoding="utf-8")), model_id)
        except (OSError, ValueError, KeyError) as exc:
            log.debug("%s: unusable config (%s)", path, exc)
    if model_id in KNOWN_MODELS:
        return KNOWN_MODELS[model_id]
    if model_id.startswith("mlsearch/"):  # made here on first use (the tiny test models), never on the hub
        from mlsearch_lib.models.offline import resolve_model

        return ModelShape.from_config(json.loads((resolve_model(model_id) / "config.json").read_text(encoding="utf-8")),
                                      model_id)
    raise KeyError(f"no config.json for {model_id!r} at hand and not a known model "
                   f"({', '.join(KNOWN_MODELS)}); pass a local model directory")


def _config_candidates(model_id: str) -> list[Path]:
    from mlsearch_lib.config.paths import model_cache_dir

    out = [Path(model_id).expanduser() / "config.json", model_cache_dir() / model_id.replace("/", "--") / "config.json"]
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model_id, "config.json")
        if isinstance(cached, str):
            out.insert(1, Path(cached))
    except Exception:  # noqa: BLE001 - an odd id or an old huggingface_hub: just skip the cache
        pass
    return [p for p in out if p.is_file()]
