from __future__ import annotations

import json

import pytest

from mlsearch_lib.probe import main


def test_a_probe_scores_the_held_out_fold_while_training_and_reports_tfidf_beside_it(isolated_outputs):
    main(["--profile", "tiny", "--task", "QC", "--fold", "1", "--set", "encoder.epochs=2", "--name", "two"])
    res = json.loads((isolated_outputs / "out" / "reports" / "probes" / "QC_fold1_two.json").read_text())
    assert res["settings"]["epochs"] == 2 and res["backbone"] == "encoder"
    epochs = [c["epoch"] for c in res["curve"]]
    assert epochs == sorted(epochs) and epochs[-1] == pytest.approx(2.0) and len(epochs) >= 2
    assert all(0.0 <= c["eval_auc"] <= 1.0 for c in res["curve"]) and 0.0 <= res["tfidf_auc"] <= 1.0
    assert res["train_rows"] == 64 and 50 < res["val_rows"] < 150  # tiny: 64 training rows at most, 300 in 3 folds
    main(["--profile", "tiny", "--task", "QC", "--fold", "0", "--name", "one"])
    index = (isolated_outputs / "out" / "reports" / "probes" / "README.md").read_text()
    rows = [line for line in index.splitlines() if line.startswith("| QC")]
    assert [[c.strip() for c in r.split("|")[2:4]] for r in rows] == [["0", "one"], ["1", "two"]]  # both, by fold
    assert f"{res['tfidf_auc']:.4f}" in rows[1] and f"{res['curve'][-1]['eval_auc']:.4f}" in rows[1]
    with pytest.raises(ValueError, match="folds 0..2"):
        main(["--profile", "tiny", "--fold", "7"])
