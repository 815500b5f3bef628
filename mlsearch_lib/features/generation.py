"""Generated descriptions (DG) and query translations (QT): one generator interface, two
engines, and a persistent cache so nothing is ever generated twice.

* :class:`TransformersGenerator` (the fallback, any machine) and :class:`~mlsearch_lib.models.vllm_engine.VLLMGenerator`
  (optional ``gpu`` extra, imported lazily) share ``generate(prompts, params) -> texts``.
* Sampling is seeded *per row*: each row draws its Gumbel noise from its own generator, seeded
  by (seed, prompt), so a row's text does not depend on which rows share its batch — a run
  killed and resumed gives the same texts as an uninterrupted one.
* :class:`GenerationCache` is an SQLite table keyed by model id + template + sampling
  parameters + prompt. :func:`generate_cached` commits after every batch: a killed run loses
  at most the batch in flight, and a rerun generates only what is missing.

    python -m mlsearch_lib.features.generation --model google/gemma-3-270m --input prompts.jsonl --cache gen.sqlite
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sqlite3
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import pandas as pd
import torch

from mlsearch_lib.config.hardware import default_device, native_bf16
from mlsearch_lib.config.paths import build_dir, ensure
from mlsearch_lib.config.profiles import GenerationConfig
from mlsearch_lib.config.progress import tqdm
from mlsearch_lib.data.records import DataFormatError, iter_jsonl
from mlsearch_lib.features.prompts import QT_LANGUAGE, load_template
from mlsearch_lib.models import engines


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings; the seed's DG used temperature 0.2, top_p 0.9, up to 256 tokens."""

    max_new_tokens: int = 256
    temperature: float = 0.2
    top_p: float = 0.9
    seed: int = 0
    stop: str | None = None  # generation of a row ends once this text appears


class Generator(Protocol):
    model_id: str

    def generate(self, prompts: Sequence[str], params: GenerationParams) -> list[str]: ...


def row_seed(seed: int, prompt: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()[:8], "little") & (2**63 - 1)


class _RowSampler:
    """A logits processor that turns greedy search into per-row seeded top-p sampling.

    argmax(logits / T + Gumbel noise) over the top-p set is an exact sample from that
    distribution (the Gumbel-max trick); drawing the noise from one ``torch.Generator`` per
    row keeps each row's draws independent of its batch.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float):
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature, self.top_p = temperature, top_p

    #: candidates per step: the top-p set lies far inside the top 1,024 tokens at these temperatures,
    #: and sorting 1,024 instead of a 262k vocabulary keeps sampling cheap
    candidates = 1024

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.temperature <= 0:
            return scores  # greedy
        top, idx = (scores.float() / self.temperature).topk(min(self.candidates, scores.shape[-1]), dim=-1)
        probs = top.softmax(-1)
        top = top.masked_fill(probs.cumsum(-1) - probs > self.top_p, float("-inf"))
        u = torch.stack([torch.rand(top.shape[-1], generator=g) for g in self.generators]).clamp(1e-12, 1 - 1e-7)
        noisy = top + (-torch.log(-torch.log(u))).to(top.device)
        return torch.full_like(scores, float("-inf"), dtype=noisy.dtype).scatter(-1, idx, noisy)


class TransformersGenerator:
    """Batched, left-padded ``generate`` on any Hugging Face causal LM (resolved offline)."""

    def __init__(self, model_id: str, batch_size: int = 8):
        from transformers import AutoModelForCausalLM

        from mlsearch_lib.models.offline import load_tokenizer, resolve_model

        self.model_id, self.batch_size = model_id, batch_size
        path = resolve_model(model_id)
        self.device = default_device()
        self.tokenizer = load_tokenizer(path, padding_side="left")
        dtype = torch.bfloat16 if native_bf16("cuda") else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], params: GenerationParams) -> list[str]:
        from transformers import LogitsProcessorList

        out: list[str] = []
        for s in range(0, len(prompts), self.batch_size):
            batch = list(prompts[s:s + self.batch_size])
            enc = self.tokenizer(batch, return_tensors="pt", padding=True).to(self.device)
            sampler = _RowSampler([row_seed(params.seed, p) for p in batch], params.temperature, params.top_p)
            gen = self.model.generate(
                **enc, do_sample=False, max_new_tokens=params.max_new_tokens, logits_processor=LogitsProcessorList([sampler]),
                stop_strings=[params.stop] if params.stop else None, tokenizer=self.tokenizer,
                pad_token_id=self.tokenizer.pad_token_id, top_p=None, top_k=None, temperature=None)
            texts = self.tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            out += [_cut_at_stop(t, params.stop) for t in texts]
        return out


def _cut_at_stop(text: str, stop: str | None) -> str:
    """Text up to and including the first ``stop`` (rows of a batch run on past their own stop)."""
    if stop and stop in text:
        return text[:text.index(stop) + len(stop)]
    return text


def make_generator(cfg: GenerationConfig) -> Generator:
    """The profile's engine; an optional one (vLLM) is imported only when asked for (:mod:`~mlsearch_lib.models.engines`)."""
    if cfg.engine != "transformers":
        return engines.engine(cfg.engine, "generator")(cfg.model, tensor_parallel_size=cfg.tensor_parallel_size)
    return TransformersGenerator(cfg.model, batch_size=cfg.batch_size)


# -- the cache -------------------------------------------------------------------------------
class CacheError(RuntimeError):
    """The cache file is not an SQLite generation cache; the message names it and what to do."""


class GenerationCache:
    """Generated texts in SQLite, one row per (model, template, params, prompt) key."""

    def __init__(self, path: Path):
        self.path = Path(path)
        ensure(self.path.parent)
        try:
            self.db = sqlite3.connect(self.path, timeout=60)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS generated (key TEXT PRIMARY KEY, model TEXT, prompt TEXT,"
                            " output TEXT, seconds REAL, created REAL)")
            self.db.commit()
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"{self.path}: not a generation cache ({exc}); move it aside or pass another --cache "
                             "(the outputs it held are generated again)") from None

    @staticmethod
    def key(model_id: str, template: str, params: GenerationParams, prompt: str) -> str:
        payload = json.dumps([model_id, template, asdict(params), prompt], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()

    def get(self, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for s in range(0, len(keys), 500):
            chunk = list(keys[s:s + 500])
            q = f"SELECT key, output FROM generated WHERE key IN ({','.join('?' * len(chunk))})"
            found.update(self.db.execute(q, chunk).fetchall())
        return found

    def put(self, rows: Sequence[tuple[str, str, str, str, float]]) -> None:
        """(key, model, prompt, output, seconds) rows, committed at once."""
        now = time.time()
        self.db.executemany("INSERT OR REPLACE INTO generated VALUES (?, ?, ?, ?, ?, ?)", [(*r, now) for r in rows])
        self.db.commit()

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM generated").fetchone()[0]

    def close(self) -> None:
        self.db.close()


def default_cache() -> GenerationCache:
    """One cache for every profile and run: keys hold everything that changes an output."""
    return GenerationCache(build_dir() / "cache" / "generation.sqlite")


def generate_cached(generator: Generator, prompts: Sequence[str], params: GenerationParams, cache: GenerationCache,
                    template: str = "", batch_size: int = 8, progress: bool = True) -> tuple[list[str], dict[str, Any]]:
    """Texts for ``prompts`` (in order), generating only those not in ``cache``.

    Each batch is committed as soon as it is generated. Returns the texts and
    ``{rows, cached, generated, seconds, rows_per_s}`` for this call.
    """
    keys = [GenerationCache.key(generator.model_id, template, params, p) for p in prompts]
    found = cache.get(keys)
    first = {k: i for i, k in reversed(list(enumerate(keys))) if k not in found}
    todo = sorted(first.values())  # one generation per distinct missing key
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc=f"generating ({generator.model_id})", unit="row", disable=not progress)
    for s in range(0, len(todo), batch_size):
        idx = todo[s:s + batch_size]
        t0 = time.perf_counter()
        texts = generator.generate([prompts[i] for i in idx], params)
        per_row = (time.perf_counter() - t0) / len(idx)
        cache.put([(keys[i], generator.model_id, prompts[i], t, per_row) for i, t in zip(idx, texts)])
        found.update({keys[i]: t for i, t in zip(idx, texts)})
        bar.update(len(idx))
    bar.close()
    seconds = time.perf_counter() - start
    stats = {"rows": len(prompts), "cached": sum(1 for k in keys if k not in first), "generated": len(todo),
             "seconds": seconds, "rows_per_s": len(todo) / seconds if todo else float("nan")}
    return [found[k] for k in keys], stats


# -- DG and QT -------------------------------------------------------------------------------
_DG_FIELDS = {"dg_tags": "TAGS", "dg_desc": "DESC", "dg_label": "LABEL"}


def parse_description(text: str) -> dict[str, Any]:
    """``[TAGS]..[/TAGS] [DESC]..[/DESC] [LABEL]..[/LABEL]`` → fields; never raises.

    A missing closing tag is tolerated when the next opening tag (or the end) closes the
    field; ``dg_ok`` is False and ``dg_problem`` says why when a field is missing or the label
    is not yes/no, so malformed outputs are counted, not crashed on.
    """
    out: dict[str, Any] = {}
    problems = []
    for col, tag in _DG_FIELDS.items():
        m = re.search(rf"\[{tag}\](.*?)(?:\[/{tag}\]|(?=\[(?:TAGS|DESC|LABEL)\])|$)", text, flags=re.S)
        value = " ".join(m.group(1).split()) if m else ""
        if not value:
            problems.append(f"no {tag}")
        out[col] = value
    label = out["dg_label"].lower().strip(" .")
    out["dg_label"] = label if label in ("yes", "no") else ""
    if label and not out["dg_label"]:
        problems.append(f"label {label[:20]!r}")
    out["dg_ok"] = not problems
    out["dg_problem"] = "; ".join(problems)
    return out


def parse_translation(text: str) -> str:
    """The first non-empty line, without quotes; "" when the model wrote nothing."""
    for line in text.splitlines():
        line = line.strip().strip('"“”«»').strip()
        if line:
            return line
    return ""


def description_prompts(df: pd.DataFrame, template: str = "generation") -> list[str]:
    t = load_template(template)["dg"]
    return [t.format(query=q, title=title or "(no title)") for q, title in zip(df["origin_query"], df["item_title"])]


def translation_prompts(df: pd.DataFrame, template: str = "generation") -> list[str]:
    t = load_template(template)["qt"]
    return [t.format(query=q, language=lang) for q, lang in zip(df["origin_query"], df["language"])]


def _params(cfg: GenerationConfig, seed: int, what: str) -> GenerationParams:
    stop = load_template(cfg.template)[f"{what}_stop"]
    tokens = cfg.max_new_tokens if what == "dg" else cfg.qt_max_new_tokens
    return GenerationParams(max_new_tokens=tokens, temperature=cfg.temperature, top_p=cfg.top_p, seed=seed, stop=stop)


def describe(df: pd.DataFrame, generator: Generator, cfg: GenerationConfig, seed: int, cache: GenerationCache,
             progress: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
    """DG for QI rows: ``id, dg_tags, dg_desc, dg_label, dg_ok, dg_problem, dg_raw`` and the call's stats."""
    texts, stats = generate_cached(generator, description_prompts(df, cfg.template), _params(cfg, seed, "dg"), cache,
                                   template=cfg.template + ":dg", batch_size=cfg.batch_size, progress=progress)
    parsed = pd.DataFrame([parse_description(t) for t in texts])
    return pd.concat([df[["id"]].reset_index(drop=True), parsed, pd.Series(texts, name="dg_raw")], axis=1), stats


def translate(df: pd.DataFrame, generator: Generator, cfg: GenerationConfig, seed: int, cache: GenerationCache,
              progress: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
    """QT: ``id, query_en`` for the non-English rows of ``df``, and the call's stats."""
    rows = df[df["language"] != QT_LANGUAGE]
    texts, stats = generate_cached(generator, translation_prompts(rows, cfg.template), _params(cfg, seed, "qt"), cache,
                                   template=cfg.template + ":qt", batch_size=cfg.batch_size, progress=progress)
    return pd.DataFrame({"id": rows["id"].to_numpy(), "query_en": [parse_translation(t) for t in texts]}), stats


# -- command line (also the worker the kill-and-resume test kills) ----------------------------
def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m mlsearch_lib.features.generation", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=GenerationConfig().model, help="a hub id or a local model directory (default: %(default)s)")
    ap.add_argument("--input", required=True, type=Path, help="JSON lines with a 'prompt' field")
    ap.add_argument("--cache", type=Path, help="SQLite file (default: build/cache/generation.sqlite)")
    ap.add_argument("--output", type=Path, help="JSON lines {prompt, output}, in input order (written to OUTPUT.partial, then renamed)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    ap.add_argument("--batch-size", type=int, default=8, help="prompts generated together (default: %(default)s)")
    ap.add_argument("--max-new-tokens", type=int, default=GenerationParams.max_new_tokens,
                    help="tokens generated at most per prompt (default: %(default)s)")
    ap.add_argument("--temperature", type=float, default=GenerationParams.temperature,
                    help="sampling temperature; 0 = greedy (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed, combined with each prompt (default: %(default)s)")
    args = ap.parse_args(argv)
    try:
        prompts = read_prompts(args.input)
        if args.output:
            partial = args.output.with_name(args.output.name + ".partial")
            for path in (args.output, partial):
                if path.exists() and not args.overwrite:
                    raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
        cache = GenerationCache(args.cache) if args.cache else default_cache()
    except (DataFormatError, FileExistsError, CacheError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    params = GenerationParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)
    texts, stats = generate_cached(TransformersGenerator(args.model, args.batch_size), prompts, params, cache,
                                   batch_size=args.batch_size)
    if args.output:
        partial.write_text("".join(json.dumps({"prompt": p, "output": t}, ensure_ascii=False) + "\n"
                                   for p, t in zip(prompts, texts)), encoding="utf-8")
        partial.replace(args.output)
    print(json.dumps(stats))


def read_prompts(path: Path) -> list[str]:
    """The ``prompt`` of every line of a JSON-lines file; a line without one is a located error."""
    prompts = []
    for lineno, rec in iter_jsonl(path):
        if not isinstance(rec.get("prompt"), str):
            raise DataFormatError(path, lineno, "prompt", "missing" if "prompt" not in rec else f"expected text, got {rec['prompt']!r}")
        prompts.append(rec["prompt"])
    return prompts


if __name__ == "__main__":
    main()
