"""Memory plan: GPU memory a profile's fine-tuning needs, estimated before a single weight is loaded.

``python -m mlsearch_lib.memory_plan`` prints one Markdown row per profile and backbone and writes
``reports/bench/memory_plan.md``. :func:`check` compares a plan with the free memory of a CUDA
device and raises :class:`MemoryPlanError` (what is needed, what is there, what to change)
instead of letting training die of an out-of-memory error an hour in; on a machine without CUDA
it only logs. :meth:`CausalLMScorer.fit <mlsearch_lib.causal_lm.CausalLMScorer.fit>` calls it
when CUDA is present.

The model's shape comes from its ``config.json`` (a local directory, the Hugging Face cache or
the offline model cache; never the network), else from :data:`KNOWN_MODELS`.

Per device, in bytes (``b`` per-device batch, ``s`` = ``cutoff_len`` (every row padded to it: the
worst case), ``h`` hidden size, ``L`` layers, ``I`` MLP size, ``q`` = heads x head_dim,
``kv`` = kv_heads x head_dim, ``V`` vocabulary, ``r`` LoRA rank):

* **weights**: parameters x 2 bytes (bf16) or x 4 (fp32). 4-bit (bitsandbytes NF4, no double
  quantisation): the decoder's linear layers at 4.5 bits (4 + one fp32 absmax per 64 values);
  embeddings and ``lm_head`` stay unquantised and ``peft.prepare_model_for_kbit_training``
  casts them (and the norms) to fp32, 4 bytes each.
* **LoRA parameters**: ``r x (in + out)`` per adapted matrix (7 per layer, + ``lm_head`` once).
  peft keeps adapters in fp32 even on a bf16 model: 4 bytes each, **gradients** 4 more,
  **AdamW** two fp32 moments, 8 more: 16 bytes per trainable parameter. The frozen base gets no
  gradient and no optimizer state.
* **activations** (tensors autograd keeps for the backward pass), without gradient
  checkpointing: ``b x s x L x F x h x 2 bytes`` (bf16 autocast; 4 bytes on fp32) with the
  per-layer factor ``F = CALIBRATION x (4h + 3q + 3kv + 4I) / h``: the two norm inputs and outputs
  (4h), q after RoPE, attention output and the fused-attention output (3q), k and v before and
  after RoPE (3kv), the MLP's gate, up, activation and product (4I); attention runs as a fused
  kernel, so no ``s x s`` matrix is kept. LoRA dropout (p > 0) adds a dropped copy of each adapted
  input and its 1-byte mask: ``(5h + q + I) x (1 + 1/bytes)`` more. :data:`CALIBRATION` (1.10)
  is what the enumeration misses on gemma-3-270m, measured with ``saved_tensors_hooks``
  (tests/test_memory_plan.py). For Qwen2.5-14B without dropout ``F`` ≈ 20.2. With gradient
  checkpointing only each layer's input (``h``) is kept, plus one layer's full set while it is
  recomputed: ``b x s x (L + F) x h x bytes``.
* **FSDP full shard over N GPUs** divides weights, LoRA, gradients and optimizer state by N and
  adds two layers of gathered weights (the one computing, the one prefetched).
* **overhead**: 1 GiB (cuBLAS workspaces, NCCL buffers, the per-row logits, temporaries) plus 10 %
  of everything for allocator fragmentation.

The encoder (e5) plan is the same with full fine-tuning (fp32 weights, 16 bytes per trainable
parameter, word embeddings frozen when the profile says so) and BERT activations from Korthikanti
et al. (2022), eq. 2: ``s x b x h x (34 + 5 a s / h)`` bytes per layer at 16 bit, doubled for fp32.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .profiles import PROFILES_DIR, EncoderConfig, LLMConfig, Profile, load_profile

log = logging.getLogger(__name__)

GIB = 1024 ** 3
#: Measured / enumerated activations on gemma-3-270m (see the module docstring).
CALIBRATION = 1.10
OVERHEAD_BYTES = 1 * GIB
FRAGMENTATION = 0.10
NF4_BITS = 4.5
#: Cards the table checks a plan against (GiB as sold; the usable part is a little less).
CARDS = {"24 GB": 24, "40 GB": 40, "48 GB": 48, "80 GB": 80}
USABLE = 0.95  # share of a card's nominal memory a process can allocate (context, driver)


class MemoryPlanError(RuntimeError):
    """A training job would not fit in the GPU memory available; the message says what to change."""


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
    (:func:`mlsearch_lib.paths.model_cache_dir`). Never downloads.
    """
    for path in _config_candidates(model_id):
        try:
            return ModelShape.from_config(json.loads(path.read_text(encoding="utf-8")), model_id)
        except (OSError, ValueError, KeyError) as exc:
            log.debug("%s: unusable config (%s)", path, exc)
    if model_id in KNOWN_MODELS:
        return KNOWN_MODELS[model_id]
    raise KeyError(f"no config.json for {model_id!r} at hand and not a known model "
                   f"({', '.join(KNOWN_MODELS)}); pass a local model directory")


def _config_candidates(model_id: str) -> list[Path]:
    from .paths import model_cache_dir

    out = [Path(model_id).expanduser() / "config.json", model_cache_dir() / model_id.replace("/", "--") / "config.json"]
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model_id, "config.json")
        if isinstance(cached, str):
            out.insert(1, Path(cached))
    except Exception:  # noqa: BLE001 - an odd id or an old huggingface_hub: just skip the cache
        pass
    return [p for p in out if p.is_file()]


# ================================================================================ the plan


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes one GPU needs to fine-tune a backbone; ``total`` is what :func:`check` compares."""

    profile: str
    kind: str  # "llm" or "encoder"
    model: str
    precision: str  # "bf16", "fp32", "4-bit"
    batch_size: int  # per device
    seq_len: int
    gradient_checkpointing: bool
    shards: int  # FSDP full-shard over this many GPUs (1 = every GPU holds everything: 1 GPU or DDP)
    params: int
    trainable_params: int
    weights: float
    trainable: float  # trainable parameters themselves (fp32)
    gradients: float
    optimizer: float
    activations: float
    overhead: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total(self) -> float:
        return self.weights + self.trainable + self.gradients + self.optimizer + self.activations + self.overhead

    def gib(self, name: str = "total") -> float:
        return getattr(self, name) / GIB

    def describe(self) -> str:
        shard = f", FSDP over {self.shards} GPUs" if self.shards > 1 else ""
        return (f"{self.model}, {self.precision} weights, {self.kind} fine-tuning of "
                f"{self.trainable_params / 1e6:,.1f}M parameters, per-device batch {self.batch_size} x {self.seq_len} tokens, gradient checkpointing "
                f"{'on' if self.gradient_checkpointing else 'off'}{shard}")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update({k + "_gib": round(self.gib(k), 2) for k in
                  ("weights", "trainable", "gradients", "optimizer", "activations", "overhead", "total")})
        return d


def _finish(fixed: float, dynamic: float) -> tuple[float, float]:
    """(overhead, total) for the fixed + dynamic bytes."""
    overhead = OVERHEAD_BYTES + FRAGMENTATION * (fixed + dynamic + OVERHEAD_BYTES)
    return overhead, fixed + dynamic + overhead


def decoder_activation_factor(shape: ModelShape, lora_dropout: float, bytes_per_elem: int) -> float:
    """``F``: activation elements kept per token and layer, in units of ``hidden`` (module docstring)."""
    h, q, kv, i = shape.hidden, shape.q, shape.kv, shape.intermediate
    elems = 4 * h + 3 * q + 3 * kv + 4 * i
    if lora_dropout > 0:
        elems += (5 * h + q + i) * (1 + 1 / bytes_per_elem)
    return CALIBRATION * elems / h


def plan_llm(cfg: LLMConfig, profile: str = "", shape: ModelShape | None = None, shards: int = 1) -> MemoryPlan:
    """Memory one GPU needs to LoRA-tune ``cfg.model`` as ``cfg`` says (see the module docstring)."""
    shape = shape or model_shape(cfg.model)
    act_bytes = 2 if (cfg.bf16 or cfg.load_in_4bit) else 4
    if cfg.load_in_4bit:
        weights = shape.block_linear_params() * NF4_BITS / 8 + (shape.embedding_params() + shape.other_params()) * 4
        precision = "4-bit"
    else:
        weights = shape.total_params() * act_bytes
        precision = "bf16" if cfg.bf16 else "fp32"
    lora = shape.lora_params(list(cfg.target_modules), cfg.lora_r)
    notes = []
    if shards > 1:  # FSDP: everything sharded, plus two gathered layers in flight
        per_layer = (shape.block_linear_params() / shape.layers) * (NF4_BITS / 8 if cfg.load_in_4bit else act_bytes)
        weights = weights / shards + 2 * per_layer
        notes.append(f"FSDP full shard over {shards} GPUs")
    tokens = cfg.batch_size * cfg.cutoff_len
    factor = decoder_activation_factor(shape, cfg.lora_dropout, act_bytes)
    per_token = (shape.layers + factor if cfg.gradient_checkpointing else shape.layers * factor) * shape.hidden
    activations = tokens * per_token * act_bytes
    trainable, grads, optim = 4 * lora / shards, 4 * lora / shards, 8 * lora / shards
    overhead, _ = _finish(weights + trainable + grads + optim, activations)
    return MemoryPlan(profile or "-", "llm", cfg.model, precision, cfg.batch_size, cfg.cutoff_len,
                      cfg.gradient_checkpointing, shards, shape.total_params(), lora, weights, trainable, grads,
                      optim, activations, overhead, tuple(notes))


def plan_encoder(cfg: EncoderConfig, profile: str = "", shape: ModelShape | None = None) -> MemoryPlan:
    """Memory one GPU needs to fine-tune the cross-encoder (fp32, full fine-tuning)."""
    shape = shape or model_shape(cfg.model)
    total = shape.total_params()
    if cfg.lora:
        trainable_n = shape.lora_params(list(shape.linear_shapes()), 16) + shape.hidden * (shape.hidden + 2)
    else:
        trainable_n = total - (shape.vocab * shape.hidden if cfg.freeze_embeddings else 0)
    weights = 4 * total
    b, s, h, a = cfg.batch_size, cfg.max_length, shape.hidden, shape.heads
    activations = 2 * shape.layers * s * b * h * (34 + 5 * a * s / h)
    grads, optim = 4 * trainable_n, 8 * trainable_n
    overhead, _ = _finish(weights + grads + optim, activations)
    return MemoryPlan(profile or "-", "encoder", cfg.model, "fp32", b, s, False, 1, total, trainable_n,
                      weights, 0.0, grads, optim, activations, overhead)


def plan_profile(profile: Profile, kind: str = "llm", shards: int = 1) -> MemoryPlan:
    if kind == "llm":
        return plan_llm(profile.llm, profile.name, shards=shards)
    if kind == "encoder":
        return plan_encoder(profile.encoder, profile.name)
    raise ValueError(f"no memory plan for backbone {kind!r} (llm, encoder)")


def profile_names_for(cfg: LLMConfig) -> list[str]:
    """Shipped profiles whose ``llm`` section is exactly ``cfg`` (to name them in messages)."""
    names = []
    for path in sorted(PROFILES_DIR.glob("*.yaml")):
        try:
            if load_profile(path).llm == cfg:
                names.append(path.stem)
        except Exception:  # noqa: BLE001 - a broken profile is not this module's business
            continue
    return names


# =============================================================================== the check


def _alternatives(plan: MemoryPlan, cfg: LLMConfig | None, available: float) -> list[str]:
    """What else would fit, each with its planned total."""
    if cfg is None:
        return ["a smaller per-device batch (raise grad_accum to keep the effective batch)", "a larger GPU"]
    shape = model_shape(cfg.model)
    tries: list[tuple[str, MemoryPlan]] = []
    if cfg.batch_size > 1:
        smaller = cfg.model_copy(update={"batch_size": 1, "grad_accum": cfg.grad_accum * cfg.batch_size})
        tries.append((f"--set llm.batch_size=1 llm.grad_accum={smaller.grad_accum} (same effective batch)",
                      plan_llm(smaller, shape=shape, shards=plan.shards)))
    if not cfg.gradient_checkpointing:
        ckpt = cfg.model_copy(update={"gradient_checkpointing": True})
        tries.append(("--set llm.gradient_checkpointing=true", plan_llm(ckpt, shape=shape, shards=plan.shards)))
    if not cfg.load_in_4bit:
        qlora = cfg.model_copy(update={"load_in_4bit": True, "bf16": True, "gradient_checkpointing": True,
                                       "batch_size": 1, "grad_accum": cfg.grad_accum * cfg.batch_size})
        tries.append(("the gpu-qlora profile (4-bit weights, gradient checkpointing, batch 1)",
                      plan_llm(qlora, shape=shape, shards=plan.shards)))
    for n in (2, 4, 8) if not cfg.load_in_4bit else ():
        if n > plan.shards:
            tries.append((f"more GPUs: accelerate launch --config_file configs/accelerate/fsdp_14b.yaml "
                          f"--num_processes {n} (FSDP full shard)", plan_llm(cfg, shape=shape, shards=n)))
            break
    return [f"{what}: ~{p.gib():.1f} GiB{' (fits)' if p.total <= available else ''}" for what, p in tries]


def check(plan: MemoryPlan, device: Any = None, cfg: LLMConfig | None = None) -> float | None:
    """Raise :class:`MemoryPlanError` when ``plan`` does not fit on CUDA ``device``.

    Available = free memory (``torch.cuda.mem_get_info``) + what this process already holds
    (the plan counts the weights it may have loaded already). Returns the available bytes; on a
    machine or ``device`` without CUDA nothing is checked (``None``, one log line).
    """
    import torch

    if not torch.cuda.is_available() or (device is not None and torch.device(device).type != "cuda"):
        log.info("no CUDA device: memory plan not checked (%s needs ~%.1f GiB per GPU)", plan.profile, plan.gib())
        return None
    dev = torch.device(device) if device is not None else torch.device("cuda", torch.cuda.current_device())
    free, total = torch.cuda.mem_get_info(dev)
    available = float(free + torch.cuda.memory_allocated(dev))
    if plan.total <= available:
        log.info("memory plan: %.1f GiB needed, %.1f GiB available on %s", plan.gib(), available / GIB, dev)
        return available
    name = torch.cuda.get_device_name(dev)
    raise MemoryPlanError(memory_error_message(plan, available, total, f"{dev} ({name})", cfg))


def memory_error_message(plan: MemoryPlan, available: float, device_total: float, device: str,
                         cfg: LLMConfig | None = None) -> str:
    parts = ", ".join(f"{k} {plan.gib(k):.1f}" for k in ("weights", "trainable", "gradients", "optimizer",
                                                         "activations", "overhead"))
    lines = [f"profile '{plan.profile}' does not fit: training {plan.describe()} needs ~{plan.gib():.1f} GiB per "
             f"GPU ({parts} GiB), but {device} has {available / GIB:.1f} GiB available of "
             f"{device_total / GIB:.1f} GiB.",
             "To fit, change one of:"]
    lines += [f"  - {alt}" for alt in _alternatives(plan, cfg, available)]
    lines.append("(estimates: python -m mlsearch_lib.memory_plan; reports/bench/memory_plan.md)")
    return "\n".join(lines)


def check_config(cfg: LLMConfig, device: Any = None, model_config: dict | None = None, world_size: int = 1,
                 fsdp: bool = False, profile: str | None = None) -> float | None:
    """:func:`check` for an ``llm`` section (the hook at the start of causal-LM training)."""
    shape = ModelShape.from_config(model_config, cfg.model) if model_config else model_shape(cfg.model)
    name = profile or "/".join(profile_names_for(cfg)) or "custom"
    return check(plan_llm(cfg, name, shape=shape, shards=world_size if fsdp else 1), device, cfg)


# =============================================================================== the table


def fits(plan: MemoryPlan) -> str:
    ok = [card for card, gb in CARDS.items() if plan.total <= gb * 1e9 * USABLE]
    return ", ".join(ok) if ok else "none of " + "/".join(CARDS)


def markdown(plans: list[MemoryPlan]) -> str:
    head = ("| profile | backbone | model | weights | batch x tokens | grad. ckpt | trainable (M) | weights GiB | "
            "trainable + grads + AdamW GiB | activations GiB | overhead GiB | **total GiB** | fits on |")
    lines = [head, "|" + "---|" * 5 + "---:|" * 7 + "---|"]
    for p in plans:
        shard = f", FSDP over {p.shards} GPUs" if p.shards > 1 else ""
        lines.append(
            f"| {p.profile}{shard} | {p.kind} | {p.model} | {p.precision} | {p.batch_size} x {p.seq_len} | "
            f"{'on' if p.gradient_checkpointing else 'off'} | {p.trainable_params / 1e6:,.1f} | "
            f"{p.gib('weights'):.2f} | "
            f"{(p.trainable + p.gradients + p.optimizer) / GIB:.2f} | {p.gib('activations'):.2f} | "
            f"{p.gib('overhead'):.2f} | **{p.gib():.1f}** | {fits(p)} |")
    return "\n".join(lines)


def all_plans(fsdp_shards: int = 4) -> list[MemoryPlan]:
    """The llm and encoder plan of every shipped profile; for models over 5B parameters also the
    same with gradient checkpointing and (bf16 weights: FSDP does not shard these 4-bit layers)
    FSDP full shard over ``fsdp_shards`` GPUs."""
    profiles = [load_profile(p) for p in sorted(PROFILES_DIR.glob("*.yaml"), key=lambda p: p.stem)]
    plans = []
    for prof in profiles:
        plans.append(plan_profile(prof, "llm"))
        if model_shape(prof.llm.model).total_params() > 5e9:
            ckpt = prof.llm.model_copy(update={"gradient_checkpointing": True})
            if not prof.llm.gradient_checkpointing:
                plans.append(plan_llm(ckpt, f"{prof.name} + grad ckpt"))
            if not prof.llm.load_in_4bit:
                plans.append(plan_llm(prof.llm, prof.name, shards=fsdp_shards))
                plans.append(plan_llm(ckpt, f"{prof.name} + grad ckpt", shards=fsdp_shards))
    plans += [plan_profile(prof, "encoder") for prof in profiles]
    return plans


def report(plans: list[MemoryPlan]) -> str:
    q14 = model_shape("Qwen/Qwen2.5-14B-Instruct")
    return "\n".join([
        "# Memory plan: GPU memory per device for fine-tuning",
        "",
        "Estimates from `python -m mlsearch_lib.memory_plan` (arithmetic in `mlsearch_lib/memory_plan.py`), not "
        "measurements (`python -m mlsearch_lib.bench gpu` measures training's peak beside them: "
        "`reports/bench/gpu.md`). Sequences are counted at the full "
        "`cutoff_len` (the worst case). \"fits on\" allows 95 % of a card's nominal memory.",
        "",
        markdown(plans),
        "",
        f"Qwen2.5-14B-Instruct: {q14.total_params() / 1e9:.2f}B parameters (bf16 weights "
        f"{q14.total_params() * 2 / GIB:.2f} GiB); LoRA r16 on q,k,v,o,gate,up,down,lm_head: "
        f"{q14.lora_params(list(LLMConfig().target_modules) + ['lm_head'], 16) / 1e6:.1f}M trainable parameters; "
        f"activation factor F = {decoder_activation_factor(q14, 0.05, 2):.1f} per token and layer (x hidden) "
        f"with LoRA dropout 0.05, {decoder_activation_factor(q14, 0.0, 2):.1f} without.",
        "",
        "Under DDP every GPU needs the single-GPU figure; FSDP rows divide weights, adapters and optimizer "
        "state by the number of GPUs and add two gathered layers.",
        "",
    ])


def main(argv: list[str] | None = None) -> None:
    from .paths import ensure, reports_dir

    parser = argparse.ArgumentParser(prog="python -m mlsearch_lib.memory_plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    text = report(all_plans())
    print(text)
    if not args.no_write:
        out = ensure(reports_dir() / "bench") / "memory_plan.md"
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
