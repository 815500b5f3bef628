"""Prompt building: the seed's alpaca layout, every component switchable by profile flags.

A prompt is split into a ``prefix`` shared by many rows (instruction, in-context examples,
guidelines) and a row ``body`` (the query and the category/title), so a causal LM can encode
the prefix once and reuse its KV cache for every row of a batch. The encoder backbone uses
:meth:`PromptBuilder.pairs` (tagged query, tagged item) instead. Templates live in
``mlsearch_lib/templates/*.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import pandas as pd
import yaml

from mlsearch_lib.config.paths import TEMPLATES_DIR
from mlsearch_lib.config.profiles import PromptConfig
from mlsearch_lib.data.records import ITEM_FIELD, normalize_text, split_category
from mlsearch_lib.features.neighbours import NeighbourIndex

ANSWERS = {1: "yes", 0: "no"}
#: Row columns filled by notebooks 02/03 (SIT, DG, QT) and the prompt flag that reads each.
TAG_COLUMNS = {"sit": "sit", "dg_tags": "dg", "dg_desc": "dg", "query_en": "qt"}
#: The notebook that writes each flag's columns, and the flags whose columns each task's text reads
#: (a QC item is a category path: SIT and DG describe product titles only).
TAG_SOURCE = {"sit": "02_tagging", "dg": "03_description_generation", "qt": "03_description_generation"}
TASK_READS = {"QC": ("qt",), "QI": ("sit", "dg", "qt")}
#: QT translates queries into this language; queries already in it are never translated.
QT_LANGUAGE = "en"


@dataclass(frozen=True)
class Prompt:
    """``prefix + body`` is the full prompt; the answer token ("yes"/"no") follows it."""

    prefix: str
    body: str

    @property
    def text(self) -> str:
        return self.prefix + self.body


@lru_cache(maxsize=None)
def load_template(name: str) -> dict[str, Any]:
    path = TEMPLATES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no prompt template {path}")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def hct(category_path: str) -> str:
    """Hierarchical category tags: ``[D1] a [/D1] [D2] b [/D2] ...`` from correctly split levels."""
    return " ".join(f"[D{i}] {level} [/D{i}]" for i, level in enumerate(split_category(category_path), start=1))


class PromptBuilder:
    """Turns rows into tagged text pairs (encoder) or prompts (causal LM) for one task.

    In-context examples (one yes, one no per language) and neighbour items (``nb``:
    :mod:`~mlsearch_lib.features.neighbours`) are chosen by :meth:`fit` from the training fold only; a row
    never gets an example or a neighbour with its own normalised query.
    """

    def __init__(self, task: str, cfg: PromptConfig, seed: int = 0):
        self.task, self.cfg, self.seed = task, cfg, seed
        self.template = load_template(cfg.template)
        # language -> label -> up to two candidate examples (normalised query, query text, item text)
        self.examples: dict[str, dict[int, list[tuple[str, str, str]]]] = {}
        self.neighbours: NeighbourIndex | None = None

    def used_columns(self) -> list[str]:
        """Tag columns this configuration reads: they change the model's inputs."""
        return [col for col, flag in TAG_COLUMNS.items() if getattr(self.cfg, flag)]

    def check_columns(self, df: pd.DataFrame) -> None:
        """Refuse rows that lack every tag column a switched-on flag reads: every row would silently
        get the untagged text, and an ablation arm would measure nothing (a column present with
        empty values is fine: rows without a tag)."""
        for flag in TASK_READS[self.task]:
            if flag == "qt" and df["language"].eq(QT_LANGUAGE).all():
                continue  # nothing to translate (03 writes no QT for the English QI stand-in)
            cols = [col for col, f in TAG_COLUMNS.items() if f == flag]
            if getattr(self.cfg, flag) and not df.columns.intersection(cols).size:
                raise ValueError(f"prompt.{flag} is on but the {self.task} rows have no {' / '.join(cols)} column: "
                                 f"notebook {TAG_SOURCE[flag]} writes it (build/<profile>/tags/, attached by "
                                 "experiments.prepare); run it first, or give predict a file with that field")

    # -- components -------------------------------------------------------------------------
    def query_text(self, row: dict[str, Any], neighbours: Sequence[str] = ()) -> str:
        query = row["origin_query"]
        if self.cfg.qt and row.get("query_en") and row.get("language") != QT_LANGUAGE:
            query = f"{query} – {row['query_en']}"
        if neighbours:
            query = f"{query} [NB] {' ; '.join(neighbours)}"
        return f"[LANG={row['language']}] {query}" if self.cfg.lt else query

    def item_text(self, row: dict[str, Any]) -> str:
        item = row[ITEM_FIELD[self.task]]
        if self.task == "QC":
            return hct(item) if self.cfg.hct else item
        parts = [item if item.strip() else "(no title)"]
        if self.cfg.sit and row.get("sit"):
            parts.append(f"[ATTR] {row['sit']}")
        if self.cfg.dg and row.get("dg_tags"):
            parts.append(f"[GEN_TAGS] {row['dg_tags']}")
        if self.cfg.dg and row.get("dg_desc"):
            parts.append(f"[GEN_DESC] {row['dg_desc']}")
        return " ".join(parts)

    # -- in-context examples ----------------------------------------------------------------
    def fit(self, train: pd.DataFrame) -> "PromptBuilder":
        """Choose up to two example rows per language and label from ``train`` (a training fold),
        and index its relevant pairs for the neighbour items."""
        self.check_columns(train)
        self.examples, self.neighbours = {}, None
        if self.cfg.nb:
            yes = train[train["label"] == 1]
            self.neighbours = NeighbourIndex(self.cfg.nb_model, self.cfg.nb).fit(
                yes["origin_query"].map(normalize_text).tolist(), yes["origin_query"].tolist(),
                yes[ITEM_FIELD[self.task]].tolist())
        if not self.cfg.icl:
            return self
        rng = np.random.default_rng(self.seed)
        for (lang, label), group in train.groupby(["language", "label"], sort=True):
            picks = group.iloc[rng.permutation(len(group))[:8]].to_dict("records")
            chosen, seen = [], set()
            for r in picks:  # two examples with different queries, so one is always usable
                key = normalize_text(r["origin_query"])
                if key not in seen:
                    chosen.append((key, self.query_text(r), self.item_text(r)))
                    seen.add(key)
                if len(chosen) == 2:
                    break
            self.examples.setdefault(str(lang), {})[int(label)] = chosen
        return self

    def _examples_for(self, language: str, query_key: str) -> str:
        pool = self.examples.get(language) or self.examples.get("en") or next(iter(self.examples.values()), {})
        t = self.template
        out = []
        for label in (1, 0):
            usable = [e for e in pool.get(label, []) if e[0] != query_key]
            if usable:
                _, q, item = usable[0]
                out.append(t["example"].format(query=q, item_label=t["item_label"][self.task], item=item, answer=ANSWERS[label]))
        return "".join(out)

    def _neighbours_for(self, df: pd.DataFrame) -> list[list[str]]:
        if not self.cfg.nb:
            return [[] for _ in range(len(df))]
        if self.neighbours is None:
            raise RuntimeError("prompt: nb is on but the builder was never fitted on a training fold (PromptBuilder.fit)")
        return self.neighbours.lookup(df["origin_query"].map(normalize_text).tolist(), df["origin_query"].tolist())

    # -- outputs ----------------------------------------------------------------------------
    def pairs(self, df: pd.DataFrame) -> list[tuple[str, str]]:
        self.check_columns(df)
        rows, nbs = df.to_dict("records"), self._neighbours_for(df)
        return [(self.query_text(r, nb), self.item_text(r)) for r, nb in zip(rows, nbs)]

    def prompts(self, df: pd.DataFrame) -> list[Prompt]:
        self.check_columns(df)
        t = self.template
        guidelines = "".join(t["guideline"].format(line=g) for g in t["guidelines"][self.task]) if self.cfg.cot else ""
        out = []
        for r, nb in zip(df.to_dict("records"), self._neighbours_for(df)):
            examples = self._examples_for(r["language"], normalize_text(r["origin_query"])) if self.cfg.icl else ""
            prefix = t["prefix"].format(instruction=t["instruction"][self.task], examples=examples, guidelines=guidelines)
            body = t["body"].format(query=self.query_text(r, nb), item_label=t["item_label"][self.task], item=self.item_text(r))
            out.append(Prompt(prefix, body))
        return out

    def state(self) -> dict[str, Any]:
        return {"task": self.task, "cfg": self.cfg.model_dump(), "seed": self.seed,
                "examples": {lang: {str(k): v for k, v in d.items()} for lang, d in self.examples.items()},
                "neighbours": self.neighbours.state() if self.neighbours else None}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "PromptBuilder":
        pb = cls(state["task"], PromptConfig(**state["cfg"]), state["seed"])
        pb.examples = {lang: {int(k): [tuple(e) for e in v] for k, v in d.items()} for lang, d in state["examples"].items()}
        if state.get("neighbours"):  # a model saved before neighbour items has none
            pb.neighbours = NeighbourIndex.from_state(state["neighbours"])
        return pb
