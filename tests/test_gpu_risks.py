"""GPU-only risks closed on a CPU: a unit's model is gone before the next one is built (a 14B twice
does not fit), a training checkpoint holds the adapter and not a copy of lm_head, vLLM's merged
weights leave no folder behind, and `make book PROFILE=gpu` installs the gpu extra."""

from __future__ import annotations

import gc
import subprocess
import weakref
from pathlib import Path

import numpy as np
import torch

from mlsearch_lib.config.profiles import load_profile
from mlsearch_lib.data.folds import grouped_folds
from mlsearch_lib.data.records import read_task_file
from mlsearch_lib.models import relevance, vllm_engine

ROOT = Path(__file__).resolve().parent.parent


def test_each_units_model_is_freed_before_the_next_is_built(synthetic_data, tmp_path, monkeypatch):
    df = read_task_file(synthetic_data / "QC" / "train_QC.txt")
    alive: list[weakref.ref] = []
    init = relevance.RelevanceModel.__init__

    def tracked(self, *args, **kwargs):
        gc.collect()
        assert all(r() is None for r in alive), "the previous unit's model is still alive"
        init(self, *args, **kwargs)
        alive.append(weakref.ref(self))

    monkeypatch.setattr(relevance.RelevanceModel, "__init__", tracked)
    p, _ = relevance.cross_validate("tfidf", "QC", load_profile("tiny"), df, grouped_folds(df, 3, 0), tmp_path,
                                    log=lambda _: None)
    assert len(alive) == 3 and np.isfinite(p).all()


class _Adapted:
    """A model with a LoRA weight, as vllm_scorer_for sees it."""

    peft_config = {"default": None}

    def __init__(self, value: float):
        self.w = torch.full((2,), value)

    def named_parameters(self):
        return [("layer.lora_A.weight", self.w)]


class _Scorer:
    def __init__(self):
        self.model, self.cfg = _Adapted(1.0), type("Cfg", (), {"model": "base"})()

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True)
        (directory / "adapter.bin").write_bytes(b"x")


def test_a_training_checkpoint_holds_the_adapter_not_a_copy_of_lm_head(tmp_path):
    from test_distributed import make_tiny_gemma

    from mlsearch_lib.config.profiles import LLMConfig
    from mlsearch_lib.features.prompts import Prompt
    from mlsearch_lib.models.causal_lm import CausalLMScorer

    model = make_tiny_gemma(tmp_path / "gemma")  # untied lm_head: 262,144 x 64 fp32 = 67 MB
    cfg = LLMConfig(model=str(model), lora_r=4, lora_alpha=8, cutoff_len=48, batch_size=2,
                    target_modules=["q_proj", "v_proj", "lm_head"])  # the gpu profile's lm_head target
    scorer = CausalLMScorer(cfg, seed=0)
    head = scorer.model.get_output_embeddings().weight
    prompts = [Prompt("Is it relevant?\n", f"query {i}\n### Response:\n") for i in range(4)]
    log = scorer.fit(prompts, np.array([0, 1, 0, 1]), output_dir=tmp_path / "run", max_steps=2, save_steps=1)
    saved = tmp_path / "run" / "checkpoint-2" / "adapter_model.safetensors"
    assert log["global_step"] == 2 and saved.is_file()
    assert saved.stat().st_size < head.numel() * head.element_size() / 4  # LoRA's lm_head B: 4 MB, a copy 67 MB
    resumed = CausalLMScorer(cfg, seed=0).fit(prompts, np.array([0, 1, 0, 1]), output_dir=tmp_path / "run",
                                              max_steps=3, save_steps=1)
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["global_step"] == 3  # it still resumes


def test_merged_weights_for_vllm_leave_no_folder_behind(monkeypatch):
    merged_dirs: list[Path] = []

    def merge(adapter: Path, out: Path) -> Path:
        out.mkdir()
        merged_dirs.append(out.parent)
        return out

    monkeypatch.setattr(vllm_engine, "merge_adapter", merge)
    monkeypatch.setattr(vllm_engine.VLLMScorer, "from_config", classmethod(lambda cls, cfg, model, **kw: ("engine", model)))
    scorer = _Scorer()
    vllm_engine.vllm_scorer_for(scorer)
    assert merged_dirs[0].is_dir() and not (merged_dirs[0] / "adapter").exists()
    assert vllm_engine.vllm_scorer_for(scorer) is scorer._vllm_scorer[1]  # same adapter: reused, no new merge
    scorer.model = _Adapted(2.0)  # trained further: a new merge replaces the old one
    vllm_engine.vllm_scorer_for(scorer)
    assert len(merged_dirs) == 2 and not merged_dirs[0].exists() and merged_dirs[1].is_dir()
    del scorer
    gc.collect()
    assert not merged_dirs[1].exists()


def test_make_book_installs_the_extra_the_profile_needs():
    def install(profile: str) -> str:
        out = subprocess.run(["make", "-n", "-B", "book", f"PROFILE={profile}"], cwd=ROOT, capture_output=True, text=True)
        # the editable install of the project (the cpu extra's torch is installed alone, a line before)
        return next(line for line in out.stdout.splitlines() if "pip install" in line and " -e '.[" in line)

    assert "'.[gpu,dev]'" in install("gpu") and "'.[gpu,dev]'" in install("gpu-qlora")
    assert "'.[cpu,dev]'" in install("cpu") and "'.[cpu,dev]'" in install("gpu-smoke")
