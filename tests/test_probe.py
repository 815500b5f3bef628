from __future__ import annotations

import json

import pytest

from mlsearch_lib.bench.probe import main


def test_a_probe_scores_the_held_out_fold_while_training_and_reports_tfidf_beside_it(isolated_outputs):
    main(["--profile", "tiny", "--task", "QC", "--fold", "1", "--set", "encoder.epochs=2", "--name", "two"])
    res = json.loads((isolated_outputs / "out" / "reports" / "probes" / "QC_fold1_two.json").read_text())
    assert res["settings"]["epochs"] == 2 and res["backbone"] == "encoder"
    epochs = [c["epoch"] for c in res["curve"]]
    assert epochs == sorted(epochs) and epochs[-1] == pytest.approx(2.0) and len(epochs) >= 2
    assert all(0.0 <= c["eval_auc"] <= 1.0 for c in res["curve"]) and 0.0 <= res["tfidf_auc"] <= 1.0
    assert res["train_rows"] == 64 and 50 < res["val_rows"] < 150  # tiny: 64 training rows at most, 300 in 3 folds
    main(["--profile", "tiny", "--task", "QC", "--fold", "1", "--set", "encoder.epochs=2", "--train-seed", "5", "--name", "seed5"])
    other = json.loads((isolated_outputs / "out" / "reports" / "probes" / "QC_fold1_seed5.json").read_text())
    assert other["train_seed"] == 5 and res["train_seed"] != 5
    assert (other["val_rows"], other["tfidf_auc"]) == (res["val_rows"], res["tfidf_auc"])  # same data, same fold
    assert [c["eval_auc"] for c in other["curve"]] != [c["eval_auc"] for c in res["curve"]]  # another model
    # refine.hi=0.5: most "no" rows are doubted, so the tiny sample holds down-weighted rows
    main(["--profile", "tiny", "--task", "QC", "--fold", "1", "--set", "encoder.epochs=2", "--set", "refine.hi=0.5",
          "--qr", "--name", "qr"])
    refined = json.loads((isolated_outputs / "out" / "reports" / "probes" / "QC_fold1_qr.json").read_text())
    assert refined["qr"] and not res["qr"] and refined["tfidf_auc"] == res["tfidf_auc"]  # the reference stays plain
    assert [c["eval_auc"] for c in refined["curve"]] != [c["eval_auc"] for c in res["curve"]]  # down-weighted rows
    main(["--profile", "tiny", "--task", "QC", "--fold", "0", "--set", "prompt.hct=false", "--name", "one"])
    index = (isolated_outputs / "out" / "reports" / "probes" / "README.md").read_text()
    header = [c.strip() for c in next(line for line in index.splitlines() if line.startswith("| task")).split("|")]
    rows = [line for line in index.splitlines() if line.startswith("| QC")]
    assert [[c.strip() for c in r.split("|")[2:4]] for r in rows] == [["0", "one"], ["1", "qr"], ["1", "seed5"], ["1", "two"]]
    assert [r.split("|")[header.index("hct")].strip() for r in rows] == ["False", "True", "True", "True"]  # the prompt flags too
    assert f"{res['tfidf_auc']:.4f}" in rows[3] and f"{res['curve'][-1]['eval_auc']:.4f}" in rows[3]
    with pytest.raises(ValueError, match="folds 0..2"):
        main(["--profile", "tiny", "--fold", "7"])
