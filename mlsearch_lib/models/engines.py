"""Optional engines, found by name: the core asks here for ``("vllm", "scorer")`` and never
imports the engine's module itself, so ``import mlsearch_lib`` never needs vLLM (the ``gpu``
extra) and no module of the core imports an optional one."""

from __future__ import annotations

import importlib
from typing import Any

#: (engine, role) -> "module:attribute". ``scorer``: called with a loaded
#: :class:`~mlsearch_lib.models.causal_lm.CausalLMScorer`, returns an object with
#: ``score_token_ids``; ``generator``: called like :class:`~mlsearch_lib.features.generation.TransformersGenerator`.
ENGINES: dict[tuple[str, str], str] = {
    ("vllm", "scorer"): "mlsearch_lib.models.vllm_engine:vllm_scorer_for",
    ("vllm", "generator"): "mlsearch_lib.models.vllm_engine:VLLMGenerator",
}


def engine(name: str, role: str) -> Any:
    """The factory of engine ``name`` for ``role``, imported on first use."""
    try:
        module, attr = ENGINES[(name, role)].split(":")
    except KeyError:
        known = sorted({n for n, r in ENGINES if r == role})
        raise ValueError(f"no {role} engine {name!r} (known besides transformers: {', '.join(known)})") from None
    return getattr(importlib.import_module(module), attr)
