"""Memory plan: GPU memory a profile's fine-tuning needs, estimated before a single weight is loaded.

``python -m mlsearch_lib.bench memory`` prints one Markdown row per profile and backbone and writes
``reports/bench/memory_plan.md`` (:mod:`mlsearch_lib.bench.memory_report`). :func:`check` compares a plan with the free memory of a CUDA
device and raises :class:`MemoryPlanError` (what is needed, what is there, what to change)
instead of letting training die of an out-of-memory error an hour in; on a machine without CUDA
it only logs. :meth:`CausalLMScorer.fit <mlsearch_lib.models.causal_lm.CausalLMScorer.fit>` calls it
when CUDA is present.

The model's shape comes from :func:`mlsearch_lib.models.model_shapes.model_shape`.

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

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from mlsearch_lib.config.profiles import PROFILES_DIR, EncoderConfig, LLMConfig, Profile, load_profile
from mlsearch_lib.models.model_shapes import GIB, ModelShape, model_shape

log = logging.getLogger(__name__)

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

    Available = free memory (``torch.cuda.mem_get_info``) + what PyTorch's caching allocator
    has reserved but not allocated (free to this process, not to ``mem_get_info``) + of what this
    process has allocated, at most the plan's own weights (loaded before the check, and counted by
    the plan). Anything else it holds, a previous fold's model not freed, is not available: the
    check then fails here instead of out of memory mid-training. Returns the available bytes; on
    a machine or ``device`` without CUDA nothing is checked (``None``, one log line).
    """
    import torch

    if not torch.cuda.is_available() or (device is not None and torch.device(device).type != "cuda"):
        log.info("no CUDA device: memory plan not checked (%s needs ~%.1f GiB per GPU)", plan.profile, plan.gib())
        return None
    dev = torch.device(device) if device is not None else torch.device("cuda", torch.cuda.current_device())
    free, total = torch.cuda.mem_get_info(dev)
    allocated = torch.cuda.memory_allocated(dev)
    cached = max(0, torch.cuda.memory_reserved(dev) - allocated)
    available = float(free + cached + min(allocated, plan.weights))
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
    lines.append("(estimates: python -m mlsearch_lib.bench memory; reports/bench/memory_plan.md)")
    return "\n".join(lines)


def check_config(cfg: LLMConfig, device: Any = None, model_config: dict | None = None, world_size: int = 1,
                 fsdp: bool = False, profile: str | None = None) -> float | None:
    """:func:`check` for an ``llm`` section (the hook at the start of causal-LM training)."""
    shape = ModelShape.from_config(model_config, cfg.model) if model_config else model_shape(cfg.model)
    name = profile or "/".join(profile_names_for(cfg)) or "custom"
    return check(plan_llm(cfg, name, shape=shape, shards=world_size if fsdp else 1), device, cfg)
