from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlsearch_lib.bench.data_curve import main, nested_shares
from mlsearch_lib.bench.probe import run_probe
from mlsearch_lib.config.profiles import load_profile
from mlsearch_lib.data.folds import query_groups


def test_shares_are_nested_whole_queries_of_the_training_rows():
    df = pd.DataFrame({"origin_query": [f"Query {i // 3}" for i in range(600)]})
    train = np.arange(600) % 4 != 0
    shares = nested_shares(df, train, [0.25, 0.5, 1.0], seed=3)
    groups = query_groups(df)
    assert (shares[1.0] == train).all()
    assert (shares[0.25] <= shares[0.5]).all() and (shares[0.5] <= shares[1.0]).all()
    for mask in shares.values():  # a query's training rows are all in or all out
        kept = pd.Series(mask[train]).groupby(groups[train]).agg(["min", "max"])
        assert (kept["min"] == kept["max"]).all()
    assert 0.15 < shares[0.25].sum() / train.sum() < 0.35 and 0.4 < shares[0.5].sum() / train.sum() < 0.6
    assert (nested_shares(df, train, [0.5], seed=3)[0.5] == shares[0.5]).all()  # seeded
    assert (nested_shares(df, train, [0.5], seed=4)[0.5] != shares[0.5]).any()


def test_a_data_curve_trains_every_model_on_every_share_and_writes_the_report(isolated_outputs):
    main(["--profile", "tiny", "--task", "QC", "--fold", "1", "--fractions", "0.5", "1", "--models", "tfidf", "encoder"])
    out = isolated_outputs / "out" / "reports" / "probes" / "data_curve"
    res = json.loads((out / "QC_fold1.json").read_text())
    rows = pd.DataFrame(res["rows"])
    assert rows[["fraction", "model"]].values.tolist() == [[0.5, "tfidf"], [0.5, "encoder"], [1.0, "tfidf"], [1.0, "encoder"]]
    half, full = rows.groupby("fraction")["train_rows"].first()
    assert 0 < half < full
    assert (rows.query("model == 'encoder'")["fit_rows"] <= 64).all()  # tiny caps the encoder's rows
    # all of the other folds: TF-IDF is the probe's reference on the same fold, to the last digit
    probe = run_probe("QC", 1, load_profile("tiny"))
    assert rows.query("fraction == 1 and model == 'tfidf'")["roc_auc"].item() == probe["tfidf_auc"]
    assert res["val_rows"] == probe["val_rows"] and full == 300 - probe["val_rows"]  # tiny: 300 QC rows
    for g in res["gains"]:
        assert g["model"] == "encoder" and g["lo"] <= g["delta"] <= g["hi"]
        enc = rows.query(f"fraction == {g['fraction']}").set_index("model")["roc_auc"]
        assert g["delta"] == pytest.approx(enc["encoder"] - enc["tfidf"])
    text = (out / "QC_fold1.md").read_text()
    assert text.startswith("# Data curve: QC fold 1") and "| 50%" in text and "e5 cross-encoder" in text and (out / "QC_fold1.png").stat().st_size > 0
    with pytest.raises(ValueError, match=r"fractions must lie in \(0, 1\]"):
        main(["--profile", "tiny", "--fractions", "0", "1"])
