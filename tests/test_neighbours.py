"""Neighbour items: nearest relevant training pairs, never the row's own query, training fold only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsearch_lib.config.profiles import PromptConfig
from mlsearch_lib.features.neighbours import NeighbourIndex
from mlsearch_lib.features.prompts import PromptBuilder

#: a 2-d "embedding" per query: its angle sets who is near whom, no model needed
ANGLES = {"car bumper": 0.0, "bumper": 0.1, "car light": 0.3, "lego": 2.0, "blocks": 2.1, "dress": 4.0,
          "bumper guard": 0.04}


@pytest.fixture(autouse=True)
def fake_vectors(monkeypatch):
    def embed(self, queries):
        return np.array([[np.cos(ANGLES[q]), np.sin(ANGLES[q])] for q in queries], dtype=np.float32)

    monkeypatch.setattr(NeighbourIndex, "_embed", embed)


def rows(*spec):
    return pd.DataFrame([{"id": i, "language": "en", "origin_query": q, "category_path": c, "label": y}
                         for i, (q, c, y) in enumerate(spec)])


def test_nearest_distinct_items_first_never_the_rows_own_query():
    index = NeighbourIndex("m", k=2).fit(["bumper", "car light", "car light", "lego", "car bumper"],
                                         ["bumper", "car light", "car light", "lego", "car bumper"],
                                         ["bumpers", "lights", "lights", "blocks", "own item"])
    assert index.lookup(["car bumper"], ["car bumper"]) == [["bumpers", "lights"]]  # "lights" once; own key skipped
    assert index.lookup(["blocks"], ["blocks"]) == [["blocks", "lights"]]
    assert index.lookup([], []) == []
    one = NeighbourIndex("m", k=1).fit(["bumper"], ["bumper"], ["bumpers"])
    assert one.lookup(["bumper"], ["bumper"]) == [[]]  # the only pair is its own query's


def test_ties_go_to_the_earlier_indexed_pair():
    index = NeighbourIndex("m", k=1).fit(["lego", "lego"], ["lego", "lego"], ["first", "second"])
    assert index.lookup(["blocks"], ["blocks"]) == [["first"]]


def test_state_round_trip_and_bad_input():
    index = NeighbourIndex("m", k=2, max_length=32).fit(["lego"], ["lego"], ["blocks"])
    again = NeighbourIndex.from_state(index.state())
    assert again.state() == index.state() and again.lookup(["blocks"], ["blocks"]) == [["blocks"]]
    with pytest.raises(ValueError, match="k must be"):
        NeighbourIndex("m", k=0)
    with pytest.raises(ValueError, match="one entry per pair"):
        index.fit(["a"], ["a", "b"], ["x"])


def test_builder_takes_neighbours_from_relevant_training_rows_only():
    train = rows(("car bumper", "bumpers", 1), ("bumper", "guards", 1), ("car light", "lights", 0),
                 ("lego", "blocks", 1))
    held_out = rows(("bumper guard", "parts", 0))
    pb = PromptBuilder("QC", PromptConfig(nb=2, lt=False, hct=False, icl=False), seed=0).fit(train)
    assert pb.pairs(held_out) == [("bumper guard [NB] bumpers ; guards", "parts")]  # not the label-0 "lights"
    own = pb.pairs(train.iloc[:1])[0][0]
    assert own == "car bumper [NB] guards ; blocks"  # a training row never sees its own query's items
    prompt = pb.prompts(held_out)[0]
    assert "bumper guard [NB] bumpers ; guards" in prompt.body
    loaded = PromptBuilder.from_state(pb.state())
    assert loaded.pairs(held_out) == pb.pairs(held_out)


def test_builder_with_neighbours_must_be_fitted():
    with pytest.raises(RuntimeError, match="never fitted"):
        PromptBuilder("QC", PromptConfig(nb=1)).pairs(rows(("lego", "blocks", 1)))
    plain = PromptBuilder("QC", PromptConfig(lt=False, hct=False, icl=False)).fit(rows(("lego", "blocks", 1)))
    assert plain.neighbours is None and plain.pairs(rows(("blocks", "x", 0))) == [("blocks", "x")]
