from __future__ import annotations

import pandas as pd
import pytest

from mlsearch_lib.config.profiles import PromptConfig
from mlsearch_lib.data.records import read_task_file
from mlsearch_lib.features.prompts import PromptBuilder, hct

QC = pd.DataFrame([
    {"id": 1, "language": "en", "origin_query": "car bumper", "category_path": "automobiles, parts & accessories,exterior parts,bumpers", "label": 1},
    {"id": 2, "language": "en", "origin_query": "lego", "category_path": "toys & hobbies,building & construction toys,blocks", "label": 1},
    {"id": 3, "language": "en", "origin_query": "car bumper", "category_path": "women's clothing,dresses", "label": 0},
    {"id": 4, "language": "en", "origin_query": "red dress", "category_path": "shoes,men's shoes", "label": 0},
    {"id": 5, "language": "ja", "origin_query": "スマホケース", "category_path": "phones,cases", "label": 1},
    {"id": 6, "language": "ja", "origin_query": "腕時計", "category_path": "shoes,men's shoes", "label": 0},
])


def test_hct_uses_the_correct_split():
    assert hct("automobiles, parts & accessories,exterior parts,bumpers") == (
        "[D1] automobiles, parts & accessories [/D1] [D2] exterior parts [/D2] [D3] bumpers [/D3]")


def test_components_switch_with_flags():
    row = QC.iloc[0].to_dict()
    on = PromptBuilder("QC", PromptConfig())
    off = PromptBuilder("QC", PromptConfig(lt=False, hct=False, icl=False, cot=False))
    assert on.query_text(row) == "[LANG=en] car bumper" and off.query_text(row) == "car bumper"
    assert on.item_text(row).startswith("[D1] automobiles, parts") and off.item_text(row) == row["category_path"]
    plain = off.fit(QC).prompts(QC.iloc[:1])[0]
    assert "Answer: yes" not in plain.text and "- " not in plain.prefix
    full = on.fit(QC).prompts(QC.iloc[:1])[0]
    assert "Answer: yes" in full.prefix and "Answer: no" in full.prefix and "- Answer yes if" in full.prefix
    assert full.body.startswith(" [LANG=en] car bumper") and full.text.endswith("### Response:\n")
    assert full.prefix.endswith("### Input:\nQuery:")  # the body's constant opening is shared too


def test_examples_come_from_the_same_language_and_never_the_rows_own_query():
    pb = PromptBuilder("QC", PromptConfig(), seed=0).fit(QC)
    for row_id in (1, 3):  # both rows with query "car bumper"
        prompt = pb.prompts(QC[QC["id"] == row_id])[0]
        assert "Query: [LANG=en] car bumper\n" not in prompt.prefix
    ja = pb.prompts(QC[QC["id"] == 5])[0]
    assert "[LANG=ja] 腕時計" in ja.prefix and "[LANG=en]" not in ja.prefix


def test_examples_only_from_the_training_fold():
    pb = PromptBuilder("QC", PromptConfig(), seed=0).fit(QC[QC["language"] == "en"])
    prompt = pb.prompts(QC[QC["id"] == 5])[0]  # unseen language falls back to English examples
    assert "スマホケース\n" not in prompt.prefix and "[LANG=en]" in prompt.prefix


def test_prefix_is_shared_by_rows_of_a_language():
    pb = PromptBuilder("QC", PromptConfig(), seed=0).fit(QC)
    prompts = pb.prompts(QC[QC["language"] == "ja"])
    # row 5's own query is an example candidate; it still gets a usable yes-example only if another exists
    assert prompts[0].body != prompts[1].body


def test_qi_slots_and_empty_title():
    qi = read_task_file(__import__("pathlib").Path(__file__).parent / "fixtures" / "qi_multilingual.jsonl")
    qi = qi.assign(sit="colour: red", dg_desc="A phone case.", query_en="men's sneakers")
    pb = PromptBuilder("QI", PromptConfig(sit=True, dg=True, qt=True)).fit(qi)
    empty = qi[qi["empty_title"]].iloc[0].to_dict()
    assert pb.item_text(empty).startswith("(no title) [ATTR] colour: red [GEN_DESC] A phone case.")
    assert pb.query_text(empty) == "[LANG=pt] tênis masculino – men's sneakers"
    assert "Product:" in pb.prompts(qi.iloc[:1])[0].body


def test_a_flag_whose_tag_columns_are_missing_is_refused_not_silently_ignored():
    qi = read_task_file(__import__("pathlib").Path(__file__).parent / "fixtures" / "qi_multilingual.jsonl")
    with pytest.raises(ValueError, match=r"no dg_tags / dg_desc column: notebook 03_description_generation"):
        PromptBuilder("QI", PromptConfig(dg=True)).fit(qi)
    with pytest.raises(ValueError, match="prompt.qt is on"):
        PromptBuilder("QC", PromptConfig(qt=True)).prompts(QC)
    english = QC[QC["language"] == "en"]  # nothing to translate, so nothing to require
    assert PromptBuilder("QC", PromptConfig(qt=True, icl=False)).pairs(english) == \
        PromptBuilder("QC", PromptConfig(icl=False)).pairs(english)
    # present but empty is a row without a tag; QC's category paths never read SIT or DG
    tagged = PromptBuilder("QI", PromptConfig(sit=True, icl=False)).pairs(qi.assign(sit=""))
    assert tagged == PromptBuilder("QI", PromptConfig(icl=False)).pairs(qi)
    assert PromptBuilder("QC", PromptConfig(sit=True, dg=True, icl=False)).pairs(QC) == \
        PromptBuilder("QC", PromptConfig(icl=False)).pairs(QC)


def test_sit_is_computed_in_the_prompt_path_for_rows_that_come_without_it():
    """Held-out, test and predict rows carry no 02 tags: the builder tags their titles itself, as
    02 does (without 02's QC leaf), and keeps a sit column that comes with the rows."""
    from mlsearch_lib.features.sit import tag_items

    qi = read_task_file(__import__("pathlib").Path(__file__).parent / "fixtures" / "qi_multilingual.jsonl")
    pb = PromptBuilder("QI", PromptConfig(sit=True, icl=False))
    computed = pb.pairs(qi)
    assert computed == pb.pairs(qi.assign(sit=tag_items(qi).to_numpy()))
    assert any("[ATTR]" in item for _, item in computed)
    assert pb.pairs(qi.assign(sit="colour: teal"))[0][1].endswith("[ATTR] colour: teal")
    assert len(pb.prompts(qi)) == len(qi) and "[ATTR]" in "".join(p.body for p in pb.prompts(qi))


def test_state_round_trip():
    pb = PromptBuilder("QC", PromptConfig(), seed=3).fit(QC)
    again = PromptBuilder.from_state(pb.state())
    assert [p.text for p in again.prompts(QC)] == [p.text for p in pb.prompts(QC)]


def test_the_scoring_benchmark_scores_the_books_prompts_with_examples_from_other_rows():
    from mlsearch_lib.bench.common import SEED, bench_inputs

    # every row its own query, so an example's text says which row it came from
    many = pd.concat([QC.assign(id=QC["id"] + 10 * k, origin_query=QC["origin_query"] + f" v{k}")
                      for k in range(6)], ignore_index=True)
    df, builder, warm = bench_inputs(many, rows=8, extra=3)
    assert len(df) == 8 and len(warm) == 3 and not set(df["id"]) & set(warm["id"])
    assert builder.prompts(df) == PromptBuilder("QC", PromptConfig(), SEED).fit(many[~many["id"].isin(
        set(df["id"]) | set(warm["id"]))]).prompts(df)  # exactly the book's builder, fitted on the rest
    prompts = builder.prompts(df)
    assert all("Answer: yes" in p.prefix and "[LANG=" in p.body and "[D1]" in p.body for p in prompts)
    example_queries = {q for lang in builder.examples.values() for picks in lang.values() for _, q, _ in picks}
    assert example_queries and not example_queries & {f"[LANG={r.language}] {r.origin_query}" for r in df.itertuples()}
