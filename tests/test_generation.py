"""DG / QT generation: parser, cache, per-row seeding, and a worker killed mid-run that resumes."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mlsearch_lib.config.paths import PROJECT_ROOT
from mlsearch_lib.config.profiles import GenerationConfig
from mlsearch_lib.features.generation import (
    GenerationCache,
    GenerationParams,
    TransformersGenerator,
    describe,
    generate_cached,
    parse_description,
    parse_translation,
    translate,
)

MODEL = "google/gemma-3-270m"


class CountingGenerator:
    """Echoes prompts; counts what it was asked to generate."""

    model_id = "fake"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def generate(self, prompts, params):
        self.asked += list(prompts)
        return [f"[TAGS] t [/TAGS] [DESC] {p.strip().splitlines()[-1]} [/DESC] [LABEL] yes [/LABEL]" for p in prompts]


def test_parser_reads_the_seed_format_and_records_malformed_outputs():
    ok = parse_description("[TAGS] lens, 67mm [/TAGS] [DESC] A phone lens.\n [/DESC] [LABEL] Yes. [/LABEL]")
    assert ok == {"dg_tags": "lens, 67mm", "dg_desc": "A phone lens.", "dg_label": "yes", "dg_ok": True, "dg_problem": ""}
    unclosed = parse_description("[TAGS] lens [DESC] a lens [LABEL] no")
    assert (unclosed["dg_tags"], unclosed["dg_desc"], unclosed["dg_label"], unclosed["dg_ok"]) == ("lens", "a lens", "no", True)
    bad = parse_description("I am a language model [LABEL] maybe [/LABEL]")
    assert not bad["dg_ok"] and bad["dg_label"] == "" and "no TAGS" in bad["dg_problem"] and "maybe" in bad["dg_problem"]
    assert parse_description("")["dg_problem"] == "no TAGS; no DESC; no LABEL"
    assert parse_translation('\n "men\'s running shoes"\nQuery: x') == "men's running shoes"
    assert parse_translation("  \n") == ""


def test_cache_generates_each_distinct_prompt_once_and_keys_on_settings(tmp_path):
    cache, gen = GenerationCache(tmp_path / "g.sqlite"), CountingGenerator()
    prompts = ["a", "b", "a", "c"]
    texts, stats = generate_cached(gen, prompts, GenerationParams(), cache, batch_size=2, progress=False)
    assert gen.asked == ["a", "b", "c"] and texts[0] == texts[2] and "DESC] b [" in texts[1]
    assert (stats["generated"], stats["cached"], stats["rows"]) == (3, 0, 4)  # cached: hits of earlier calls
    again, stats = generate_cached(gen, prompts + ["d"], GenerationParams(), cache, batch_size=2, progress=False)
    assert gen.asked[3:] == ["d"] and again[:4] == texts and (stats["generated"], stats["cached"]) == (1, 4)
    generate_cached(gen, ["a"], GenerationParams(temperature=0.5), cache, progress=False)  # new settings, new key
    generate_cached(gen, ["a"], GenerationParams(), cache, template="other", progress=False)
    assert gen.asked[4:] == ["a", "a"] and len(cache) == 6


def test_describe_and_translate_shape_their_tables(tmp_path):
    qi = pd.DataFrame({"id": ["1", "2"], "language": ["en", "th"], "origin_query": ["lens", "เลนส์"], "item_title": ["Lens", ""]})
    out, stats = describe(qi, CountingGenerator(), GenerationConfig(), 0, GenerationCache(tmp_path / "g.sqlite"), progress=False)
    assert list(out["id"]) == ["1", "2"] and out["dg_ok"].all() and "(no title)" in out.loc[1, "dg_desc"]
    qt, _ = translate(qi, CountingGenerator(), GenerationConfig(), 0, GenerationCache(tmp_path / "q.sqlite"), progress=False)
    assert list(qt["id"]) == ["2"]  # English queries are never translated


@pytest.fixture(scope="module")
def gemma() -> TransformersGenerator:
    return TransformersGenerator(MODEL, batch_size=3)


def test_sampling_is_seeded_per_row_whatever_the_batch(gemma):
    prompts = ["The best tool for cutting wood is", "My favourite colour is", "A good phone case is"]
    params = GenerationParams(max_new_tokens=6, temperature=1.0, top_p=0.95, seed=3)
    batched = gemma.generate(prompts, params)
    assert batched == gemma.generate(prompts, params)  # reproducible
    alone = [gemma.generate([p], params)[0] for p in prompts]
    assert alone == batched  # a row's text does not depend on its batch
    other_seed = gemma.generate(prompts, GenerationParams(max_new_tokens=6, temperature=1.0, top_p=0.95, seed=4))
    assert other_seed != batched


def _cached_rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM generated").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_a_killed_worker_loses_nothing_and_resumes(tmp_path):
    prompts = [f"Product {i}: a {c} cotton shirt, size" for i, c in enumerate(["red", "blue", "green", "black"] * 4)]
    src = tmp_path / "prompts.jsonl"
    src.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts), encoding="utf-8")
    db = tmp_path / "gen.sqlite"

    def command(cache: Path) -> list[str]:
        return [sys.executable, "-m", "mlsearch_lib.features.generation", "--model", MODEL, "--input", str(src), "--cache",
                str(cache), "--batch-size", "2", "--max-new-tokens", "8", "--temperature", "0.7"]

    worker = subprocess.Popen(command(db), cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _cached_rows(db) < 4 and worker.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    before = _cached_rows(db)
    assert 4 <= before < len(prompts), f"the worker should be killed mid-run (had {before} rows)"
    with sqlite3.connect(db) as con:
        kept = dict(con.execute("SELECT key, output FROM generated").fetchall())

    resumed = subprocess.run(command(db) + ["--output", str(tmp_path / "out.jsonl")], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, check=True)
    stats = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert stats["cached"] == before and stats["generated"] == len(prompts) - before  # nothing generated twice
    with sqlite3.connect(db) as con:
        after = dict(con.execute("SELECT key, output FROM generated").fetchall())
    assert len(after) == len(prompts) and all(after[k] == v for k, v in kept.items())

    fresh_db = tmp_path / "fresh.sqlite"  # an uninterrupted run gives the same texts
    subprocess.run(command(fresh_db) + ["--output", str(tmp_path / "fresh.jsonl")],
                   cwd=PROJECT_ROOT, capture_output=True, check=True)
    assert (tmp_path / "fresh.jsonl").read_text() == (tmp_path / "out.jsonl").read_text()
