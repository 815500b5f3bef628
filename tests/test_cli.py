"""The prediction CLI: one line per input id in input order, no silent overwrite, evaluation."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlsearch_lib.__main__ import main
from mlsearch_lib.models.relevance import RelevanceModel


def test_predict_writes_one_line_per_id_in_order(tmp_path, synthetic_data, qc_model):
    model_dir, df = qc_model
    src = synthetic_data / "QC" / "train_QC.txt"
    out = tmp_path / "pred.jsonl"
    done = subprocess.run([sys.executable, "-m", "mlsearch_lib", "predict", "--task", "QC", "--model", str(model_dir), "--trust-model",
                           "--input", str(src), "--output", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in lines] == df["id"].tolist()
    assert all(set(r) == {"id", "prediction", "p_yes"} and r["prediction"] in (0, 1) and 0 <= r["p_yes"] <= 1 for r in lines)
    # same model, same input -> same p_yes as in-process
    p = RelevanceModel.load(model_dir, trust=True).predict_proba(df)
    assert [r["p_yes"] for r in lines] == pytest.approx(p.tolist(), abs=1e-6)


def test_predict_refuses_to_overwrite_and_partial(tmp_path, synthetic_data, qc_model, capsys):
    model_dir, _ = qc_model
    args = ["predict", "--task", "QC", "--model", str(model_dir), "--trust-model", "--input", str(synthetic_data / "QC" / "train_QC.txt")]
    out = tmp_path / "pred.jsonl"
    (tmp_path / "pred.jsonl.partial").write_text('{"id": 1}\n')
    assert main(args + ["--output", str(out)]) == 2
    assert "pred.jsonl.partial exists" in capsys.readouterr().err and not out.exists()
    assert main(args + ["--output", str(out), "--overwrite"]) == 0
    assert not (tmp_path / "pred.jsonl.partial").exists()
    assert main(args + ["--output", str(out)]) == 2 and "--overwrite" in capsys.readouterr().err
    assert main(["predict", "--task", "QI", "--model", str(model_dir), "--trust-model", "--input", str(synthetic_data / "QI" / "train_QI_homedepot.txt"),
                 "--output", str(tmp_path / "qi.jsonl")]) == 2
    assert "is a QC model" in capsys.readouterr().err


def test_evaluate_prints_overall_and_per_language(tmp_path, synthetic_data, qc_model, capsys):
    model_dir, df = qc_model
    gold = synthetic_data / "QC" / "train_QC.txt"
    pred = tmp_path / "pred.jsonl"
    assert main(["predict", "--task", "QC", "--model", str(model_dir), "--trust-model", "--input", str(gold), "--output", str(pred), "--threshold", "1e-9"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--pred", str(pred), "--gold", str(gold)]) == 0
    text = capsys.readouterr().out
    assert "roc_auc" in text and "pr_auc" in text and "| all" in text and "| ja" in text
    all_yes = 2 * df["label"].mean() / (1 + df["label"].mean())
    assert f"{all_yes:.4f}" in text  # threshold ~0 = all "yes"
    pred.write_text("\n".join(pred.read_text().splitlines()[:-1]) + "\n")
    assert main(["evaluate", "--pred", str(pred), "--gold", str(gold)]) == 2
    assert "have no prediction" in capsys.readouterr().err
