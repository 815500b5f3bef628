"""The memory plan of every shipped profile as one table: ``python -m mlsearch_lib.bench memory``
prints it and writes ``reports/bench/memory_plan.md``. The arithmetic is :mod:`mlsearch_lib.models.memory_plan`'s."""

from __future__ import annotations

from mlsearch_lib.config.paths import ensure, reports_dir
from mlsearch_lib.config.profiles import PROFILES_DIR, LLMConfig, load_profile
from mlsearch_lib.models.memory_plan import CARDS, USABLE, MemoryPlan, decoder_activation_factor, plan_llm, plan_profile
from mlsearch_lib.models.model_shapes import GIB, model_shape


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
        "Estimates from `python -m mlsearch_lib.bench memory` (arithmetic in `mlsearch_lib/models/memory_plan.py`), not "
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


def write_report(write: bool = True) -> str:
    """The table of :func:`all_plans`, written to ``reports/bench/memory_plan.md`` unless ``write`` is false."""
    text = report(all_plans())
    if write:
        (ensure(reports_dir() / "bench") / "memory_plan.md").write_text(text, encoding="utf-8")
    return text
