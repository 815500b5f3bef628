"""``python -m mlsearch_lib score`` (one pair, the p(yes) ``predict`` gives it), the help of every
command-line option, and ``python -m mlsearch_lib.models.train`` building what a profile submits."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from mlsearch_lib.__main__ import main
from mlsearch_lib.data.records import read_task_file
from mlsearch_lib.models import train


def _train(task: str, output, *args: str) -> None:
    assert train.main(["--profile", "tiny", "--task", task, "--output", str(output), *args]) == 0


@pytest.fixture()
def tfidf_models(isolated_outputs, synthetic_data):
    """A TF-IDF model per task, trained by the training CLI into a directory outside the build dir."""
    out = {}
    for task in ("QC", "QI"):
        _train(task, isolated_outputs / f"model_{task}", "--kind", "tfidf", "--max-rows", "150")
        out[task] = isolated_outputs / f"model_{task}"
    return out


def _score(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["score", "--json", *args]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _pair_args(task: str, row) -> list[str]:
    item = ["--category", row["category_path"]] if task == "QC" else ["--title", row["item_title"]]
    return ["--task", task, "--query", row["origin_query"], *item, "--language", row["language"]]


@pytest.mark.parametrize("task", ["QC", "QI"])
def test_score_gives_predicts_p_yes_and_decides_at_the_threshold(task, tfidf_models, synthetic_data, isolated_outputs,
                                                                 capsys):
    model = tfidf_models[task]
    src = synthetic_data / task / ("train_QC.txt" if task == "QC" else "train_QI_homedepot.txt")
    pred = isolated_outputs / f"pred_{task}.jsonl"
    assert main(["predict", "--task", task, "--model", str(model), "--trust-model", "--input", str(src),
                 "--output", str(pred), "--threshold", "0.5"]) == 0
    predicted = {r["id"]: r for r in map(json.loads, pred.read_text(encoding="utf-8").splitlines())}
    df = read_task_file(src, task=task)
    rows = df.drop_duplicates("language").head(4)
    assert len(rows) >= 2
    base = ["--model", str(model), "--trust-model"]
    for _, row in rows.iterrows():
        got = _score(capsys, *_pair_args(task, row), *base, "--threshold", "0.5")
        want = predicted[row["id"]]
        assert got["p_yes"] == pytest.approx(want["p_yes"], abs=1e-6)
        assert got["prediction"] == want["prediction"] and got["threshold"] == 0.5
        p = got["p_yes"]
        assert _score(capsys, *_pair_args(task, row), *base, "--threshold", str(max(p - 0.01, 1e-3)))["prediction"] == 1
        assert _score(capsys, *_pair_args(task, row), *base, "--threshold", str(min(p + 0.01, 0.999)))["prediction"] == 0
    # without --threshold: the model's thresholds.json, per language, else the global one
    row = rows.iloc[0]
    p = _score(capsys, *_pair_args(task, row), *base, "--threshold", "0.5")["p_yes"]
    (model / "thresholds.json").write_text(json.dumps({"global": min(p + 0.01, 0.999),
                                                       "per_language": {row["language"]: max(p - 0.01, 1e-3)}}))
    own = _score(capsys, *_pair_args(task, row), *base)
    assert own["prediction"] == 1 and own["threshold"] == pytest.approx(max(p - 0.01, 1e-3))
    other = _score(capsys, *_pair_args(task, row)[:-1], "zz", *base)  # a language it has no threshold of
    assert other["threshold"] == pytest.approx(min(p + 0.01, 0.999)) and other["prediction"] == int(other["p_yes"] >= other["threshold"])
    # the plain output names p(yes), the threshold and the decision
    capsys.readouterr()
    assert main(["score", *_pair_args(task, row), *base]) == 0
    text = capsys.readouterr().out
    assert f"p_yes {own['p_yes']:.6f}" in text and "prediction 1 (relevant)" in text


def test_score_refuses_what_it_cannot_score(tfidf_models, capsys):
    qc = ["--model", str(tfidf_models["QC"]), "--query", "red shoes"]
    assert main(["score", "--task", "QC", *qc, "--category", "shoes", "--trust-model"]) == 2
    assert "no tuned thresholds" in capsys.readouterr().err  # the fixture's models have no thresholds.json
    assert main(["score", "--task", "QC", *qc, "--category", "shoes", "--threshold", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "pickle" in err and "--trust-model" in err
    assert main(["score", "--task", "QC", *qc, "--title", "red shoes 42", "--threshold", "0.5", "--trust-model"]) == 2
    assert "--category" in capsys.readouterr().err
    assert main(["score", "--task", "QI", *qc, "--title", "red shoes 42", "--threshold", "0.5", "--trust-model"]) == 2
    assert "is a QC model" in capsys.readouterr().err
    assert main(["score", "--task", "QC", *qc, "--category", "shoes", "--threshold", "1.5", "--trust-model"]) == 2
    assert "(0, 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a category and a title at once
        main(["score", "--task", "QC", *qc, "--category", "shoes", "--title", "x", "--threshold", "0.5"])


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


def _parser_of(entry, monkeypatch) -> argparse.ArgumentParser:
    """The parser a command-line ``main`` builds, caught before it parses anything."""
    def catch(self, *args, **kwargs):
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    with pytest.raises(_Parsed) as caught:
        entry([])
    monkeypatch.undo()
    return caught.value.parser


def _all_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


def test_every_option_of_every_command_line_has_a_help_line(monkeypatch):
    from mlsearch_lib import __main__ as cli
    from mlsearch_lib.bench import cli as bench
    from mlsearch_lib.bench import data_curve, probe
    from mlsearch_lib.book import jobs
    from mlsearch_lib.features import generation

    entries = {"mlsearch_lib": cli.main, "mlsearch_lib.models.train": train.main, "mlsearch_lib.bench": bench.main,
               "mlsearch_lib.bench.data_curve": data_curve.main, "mlsearch_lib.bench.probe": probe.main,
               "mlsearch_lib.book.jobs": jobs.main, "mlsearch_lib.features.generation": generation.main}
    missing = []
    for name, entry in entries.items():
        root = _parser_of(entry, monkeypatch)
        assert root.description, name
        for parser in _all_parsers(root):
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    missing += [f"{parser.prog} {c.dest}" for c in action._choices_actions if not c.help]
                elif not action.help or action.help == argparse.SUPPRESS:
                    missing.append(f"{parser.prog} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, "options without a help line:\n" + "\n".join(missing)


def test_the_parsers_name_the_file_formats():
    from mlsearch_lib.__main__ import build_parser

    root = build_parser()
    subs = {p.prog.split()[-1]: p for p in _all_parsers(root) if p is not root}
    assert set(subs) == {"predict", "score", "evaluate"}
    for parser in (root, subs["predict"], subs["evaluate"]):
        for field in ("id", "language", "origin_query", "category_path", "item_title", "label", "prediction", "p_yes"):
            assert field in parser.description, (parser.prog, field)
    assert "p_yes" in subs["score"].description and "item_title" in subs["score"].description
    desc = train.build_parser().description
    assert all(f in desc for f in ("id", "language", "origin_query", "category_path", "item_title", "label"))


def test_train_builds_the_submitted_stack_and_score_reads_it(isolated_outputs, capsys):
    from scipy.special import expit, logit

    from mlsearch_lib.models.loading import load_model
    from mlsearch_lib.models.stacking import StackedModel

    out = isolated_outputs / "stack_QC"
    sets = ["--set", "backbone=tfidf", "--set", "stack_with=bi_encoder"]
    _train("QC", out, "--kind", "stacked", *sets)
    for name in ("mlsearch_model.json", "thresholds.json", "train_log.json", "parts/tfidf", "parts/bi_encoder"):
        assert (out / name).exists(), name
    assert not out.with_name("stack_QC.partial").exists()
    # notebooks' run dir untouched: the stack ran in build/tiny.train/
    build = isolated_outputs / "build"
    assert not (build / "tiny").exists() and (build / "tiny.train" / "oof" / "QC_stacked_all.csv").is_file()
    record = json.loads((out / "train_log.json").read_text())
    assert record["kind"] == "stacked" and record["parts"] == ["bi_encoder", "tfidf"]
    assert set(record["oof_roc_auc"]) == {"bi_encoder", "tfidf", "stacked"}
    stack = load_model(out, trust=True)
    assert isinstance(stack, StackedModel) and list(stack.parts) == ["bi_encoder", "tfidf"]
    np.testing.assert_allclose(stack.coef, list(record["coef"].values()))
    thresholds = json.loads((out / "thresholds.json").read_text())
    # score loads it, at its tuned threshold, with the p(yes) of its parts through its weights
    row = {"id": 7, "language": "es", "origin_query": "zapatos rojos", "category_path": "shoes,women's shoes"}
    got = _score(capsys, "--task", "QC", "--model", str(out), "--trust-model", "--query", row["origin_query"],
                 "--category", row["category_path"], "--language", row["language"])
    (isolated_outputs / "pair.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    frame = read_task_file(isolated_outputs / "pair.jsonl", task="QC")
    parts = [m.predict_proba(frame) for m in stack.parts.values()]
    x = np.column_stack([logit(np.clip(p, 1e-6, 1 - 1e-6)) for p in parts])
    assert got["p_yes"] == pytest.approx(float(expit(x @ stack.coef + stack.intercept)[0]), abs=1e-6)
    assert got["threshold"] == pytest.approx(thresholds["per_language"].get("es", thresholds["global"]))
    assert got["prediction"] == int(got["p_yes"] >= got["threshold"])


def test_train_defaults_to_what_the_profile_submits(isolated_outputs):
    from mlsearch_lib.models.loading import load_model

    _train("QI", isolated_outputs / "m", "--set", "backbone=tfidf", "--set", "stack_with=null", "--max-rows", "80")
    model = load_model(isolated_outputs / "m", trust=True)
    assert model.kind == "tfidf" and json.loads((isolated_outputs / "m" / "train_log.json").read_text())["rows"] < 200  # sampled
    with pytest.raises(ValueError, match="no stack_with"):
        train.train("tiny", "QI", "stacked", isolated_outputs / "s", sets=["stack_with=null"])
