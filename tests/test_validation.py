"""Folds, thresholds, metrics and the reference rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlsearch_lib.data.folds import grouped_folds, trainable
from mlsearch_lib.data.records import normalize_text, read_task_file
from mlsearch_lib.evaluation.metrics import _WeightedAUC, all_yes_f1, auc_delta_interval, by_language, scores
from mlsearch_lib.evaluation.thresholds import Thresholds, best_f1_threshold
from mlsearch_lib.models.reference import TfidfPair


@pytest.fixture()
def qc(synthetic_data):
    return read_task_file(synthetic_data / "QC" / "train_QC.txt")


def test_no_normalised_query_in_two_folds(qc):
    qc = pd.concat([qc, qc.assign(id=qc["id"] + 10_000, origin_query=qc["origin_query"].str.upper() + "  ")])
    folds = grouped_folds(qc, 3, seed=0)
    per_query = pd.Series(folds).groupby(qc["origin_query"].map(normalize_text).to_numpy()).nunique()
    assert set(folds) == {0, 1, 2} and per_query.max() == 1
    assert np.array_equal(folds, grouped_folds(qc, 3, seed=0))


def test_trainable_official_languages(qc):
    mask = trainable(qc, ["en", "ja"])
    assert set(qc.loc[mask, "language"]) == {"en", "ja"} and trainable(qc, None).all()


def test_best_threshold_beats_half_when_scores_are_shifted():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.7).astype(int)
    p = np.clip(0.25 + 0.2 * y + rng.normal(0, 0.1, len(y)), 0, 1)  # everything below 0.5
    thr, f1 = best_f1_threshold(y, p)
    assert thr < 0.5 and f1 > scores(y, p, 0.5)["f1"] + 0.3
    assert f1 == pytest.approx(scores(y, p, thr)["f1"], abs=1e-9)


def test_per_language_thresholds_shrink_and_unseen_get_global():
    rng = np.random.default_rng(1)
    lang = np.array(["a"] * 1000 + ["b"] * 30)
    y = (rng.random(len(lang)) < 0.6).astype(int)
    p = np.where(lang == "a", 0.5 + 0.3 * y, 0.1 + 0.2 * y) + rng.normal(0, 0.05, len(lang))
    t = Thresholds.tune(lang, y, p, shrinkage=200)
    own_b, _ = best_f1_threshold(y[lang == "b"], p[lang == "b"])
    w = 30 / 230
    assert t.per_language["b"] == pytest.approx(w * own_b + (1 - w) * t.global_)
    assert t.for_rows(np.array(["zz"]))[0] == t.global_
    assert Thresholds.from_dict(t.to_dict()).per_language == t.per_language


def test_metrics_and_all_yes():
    y = np.array([1, 1, 0, 1])
    assert all_yes_f1(y) == pytest.approx(2 * 0.75 / 1.75)
    table = by_language(np.array(["x", "x", "y", "y"]), y, np.array([0.9, 0.8, 0.2, 0.6]))
    assert table.loc["all", "roc_auc"] == 1.0 and np.isnan(table.loc["x", "roc_auc"])


def test_tfidf_reference_learns_lexical_overlap():
    rng = np.random.default_rng(0)
    words = ["lampe", "kabel", "tasche", "schuh", "uhr", "puzzle", "hülle", "jacke", "ring", "bürste"]
    def pair(i):
        q = words[i % 10] + f" {rng.integers(100)}"
        pos = rng.random() < 0.6
        item = f"{words[i % 10] if pos else words[(i + 3) % 10]} premium {rng.integers(100)}"
        return (q, item), int(pos)
    data = [pair(i) for i in range(400)]
    pairs, y = [d[0] for d in data], np.array([d[1] for d in data])
    model = TfidfPair(seed=0)
    model.fit(pairs[:300], y[:300])
    p = model.predict_proba(pairs[300:])
    assert p.shape == (100,) and ((p > 0) & (p < 1)).all()
    assert scores(y[300:], p)["roc_auc"] > 0.9


def test_stacking_two_models_that_err_on_different_rows_beats_either_and_ignores_noise():
    from sklearn.metrics import roc_auc_score

    from mlsearch_lib.evaluation.experiments import results_table
    from mlsearch_lib.models.stacking import stacked_oof

    rng = np.random.default_rng(0)
    n = 3000
    y = rng.integers(0, 2, n)
    signal = 2.0 * y - 1.0
    half = rng.random(n) < 0.5  # model a sees the label on one half of the rows, model b on the other
    a = 1 / (1 + np.exp(-(np.where(half, signal, 0.0) + rng.normal(0, 1, n))))
    b = 1 / (1 + np.exp(-(np.where(half, 0.0, signal) + rng.normal(0, 1, n))))
    noise = rng.random(n)
    folds = rng.integers(0, 5, n)
    p, weights = stacked_oof(y, folds, {"a": a, "b": b, "noise": noise})
    assert roc_auc_score(y, p) > max(roc_auc_score(y, a), roc_auc_score(y, b)) + 0.05
    assert list(weights.columns) == ["a", "b", "noise"] and len(weights) == 5
    assert (weights[["a", "b"]] > 0.5).all().all() and (weights["noise"].abs() < 0.3).all()
    table = results_table(pd.DataFrame({"label": y}), folds, {"tfidf": a, "a + b (stacked)": p})
    assert list(table.index) == ["TF-IDF char n-gram + LR", "a + b (stacked)"]
    gain = table.loc["a + b (stacked)"]
    assert gain["Δroc_auc"] == pytest.approx(roc_auc_score(y, p) - roc_auc_score(y, a))
    assert 0 < gain["Δroc_auc 95% lo"] < gain["Δroc_auc"] < gain["Δroc_auc 95% hi"]
    assert np.isnan(table.loc["TF-IDF char n-gram + LR", "Δroc_auc"])  # the reference row has no delta


def test_the_stacked_table_gives_the_gain_over_its_base_and_over_tfidf():
    from sklearn.metrics import roc_auc_score

    from mlsearch_lib.evaluation.experiments import stacked_table

    rng = np.random.default_rng(2)
    n = 800
    y = rng.integers(0, 2, n)
    half = rng.random(n) < 0.5
    score = lambda seen, sd: 1 / (1 + np.exp(-(np.where(seen, 2.0 * y - 1, 0.0) + rng.normal(0, sd, n))))  # noqa: E731
    oofs = {"tfidf": score(half, 2.0), "hybrid": score(half, 1.0), "encoder": score(~half, 1.0)}
    folds = rng.integers(0, 5, n)
    name, p, table, weights = stacked_table(pd.DataFrame({"label": y}), folds, oofs, "hybrid", "encoder")
    assert name == "TF-IDF + frozen e5 + LR + e5 cross-encoder (stacked)" and list(weights.columns) == ["hybrid", "encoder"]
    assert list(table.index) == ["TF-IDF + frozen e5 + LR", name]
    auc = {k: roc_auc_score(y, v) for k, v in {**oofs, name: p}.items()}
    assert table.loc[name, "Δroc_auc"] == pytest.approx(auc[name] - auc["hybrid"])
    assert table.loc[name, "Δroc_auc vs TF-IDF"] == pytest.approx(auc[name] - auc["tfidf"])
    assert table.loc["TF-IDF + frozen e5 + LR", "Δroc_auc vs TF-IDF"] == pytest.approx(auc["hybrid"] - auc["tfidf"])
    assert table.loc[name, "Δroc_auc 95% lo vs TF-IDF"] > table.loc[name, "Δroc_auc 95% lo"] > 0


def test_every_model_stacked_reads_all_parts_and_keeps_the_submitted_stack_beside_it():
    from sklearn.metrics import roc_auc_score

    from mlsearch_lib.evaluation.experiments import every_model_stacked, stacked_table

    rng = np.random.default_rng(4)
    n = 1500
    y = rng.integers(0, 2, n)
    third = rng.integers(0, 3, n)  # each model sees the label on its own third of the rows
    score = lambda seen: 1 / (1 + np.exp(-(np.where(seen, 2.0 * y - 1, 0.0) + rng.normal(0, 1, n))))  # noqa: E731
    oofs = {"all_yes": np.ones(n), "tfidf": score(third == 0), "hybrid": score(third == 1), "encoder": score(third == 2)}
    df, folds = pd.DataFrame({"label": y}), rng.integers(0, 4, n)
    name, oofs[name], _, _ = stacked_table(df, folds, oofs, "hybrid", "encoder")  # the submitted stack, as in 04
    table, weights = every_model_stacked(df, folds, oofs, ["all_yes", "tfidf", "hybrid", "encoder"])
    assert list(table.index) == ["TF-IDF char n-gram + LR", name, "every model (stacked)"]
    assert list(weights.columns) == ["TF-IDF char n-gram + LR", "TF-IDF + frozen e5 + LR", "e5 cross-encoder"]
    # the third part adds what the two-part stack lacks
    assert table.loc["every model (stacked)", "roc_auc"] > table.loc[name, "roc_auc"] + 0.03
    assert table.loc["every model (stacked)", "Δroc_auc"] == pytest.approx(
        table.loc["every model (stacked)", "roc_auc"] - roc_auc_score(y, oofs["tfidf"]))


def test_per_language_table_has_one_row_per_language_and_model_with_whole_row_counts():
    from mlsearch_lib.evaluation.experiments import per_language_table

    rng = np.random.default_rng(3)
    df = pd.DataFrame({"language": rng.choice(["fr", "en", "ko"], 300), "label": rng.integers(0, 2, 300)})
    good = df["label"] + rng.normal(0, 0.5, 300)
    oofs = {"tfidf": rng.random(300), "encoder": 1 / (1 + np.exp(-good.to_numpy()))}
    table = per_language_table(df, oofs, {"tfidf": 0.5, "encoder": 0.4})
    assert list(table.index) == [(lang, model) for lang in ("en", "fr", "ko", "all")
                                 for model in ("TF-IDF char n-gram + LR", "e5 cross-encoder")]
    assert table["rows"].dtype.kind == "i" and table.loc[("all", "e5 cross-encoder"), "rows"] == 300
    fr = (df["language"] == "fr").to_numpy()
    assert table.loc[("fr", "e5 cross-encoder"), "roc_auc"] == pytest.approx(roc_auc_score(df["label"][fr], oofs["encoder"][fr]))
    assert table.loc[("all", "e5 cross-encoder"), "roc_auc"] > table.loc[("all", "TF-IDF char n-gram + LR"), "roc_auc"]


def test_markdown_tables_give_index_levels_their_own_columns_and_counts_no_decimals():
    from mlsearch_lib.book.outputs import markdown_table

    df = pd.DataFrame({"rows": [12.0, 3.0], "roc_auc": [0.61234, 0.5]},
                      index=pd.MultiIndex.from_tuples([("QC", "ar"), ("QI", "en")], names=["task", "language"]))
    lines = markdown_table(df).splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["task", "language", "rows", "roc_auc"]
    assert [c.strip() for c in lines[2].strip("|").split("|")] == ["QC", "ar", "12", "0.6123"]
    wide = pd.DataFrame([[1.5, 2.25]], columns=pd.MultiIndex.from_tuples([("chars", "mean"), ("tokens", "mean")]))
    header = markdown_table(wide).splitlines()[0]
    assert "chars mean" in header and "tokens mean" in header and "(" not in header


def test_weighted_auc_of_a_resample_equals_sklearns_ties_and_zero_weights_included():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = np.round(y * 0.3 + rng.random(500), 1)  # coarse scores: many ties, across classes too
    auc = _WeightedAUC(y, p)
    for _ in range(5):
        w = rng.integers(0, 4, 500)  # bootstrap counts: some rows drawn 0 times
        assert auc(w) == pytest.approx(roc_auc_score(y, p, sample_weight=w), abs=1e-12)
    assert np.isnan(auc(np.where(y == 1, 1, 0)))  # no negative drawn: undefined, as sklearn says


def test_auc_delta_interval_covers_the_gain_and_widens_when_rows_come_in_query_groups():
    rng = np.random.default_rng(1)
    n = 800
    y = rng.integers(0, 2, n)
    better, worse = y + rng.normal(0, 1.0, n), y + rng.normal(0, 1.4, n)
    delta, lo, hi = auc_delta_interval(y, better, worse, n_boot=300)
    assert lo < delta < hi and lo > 0  # a real gain: the interval excludes 0
    same = auc_delta_interval(y, worse, worse, n_boot=50)
    assert same == (0.0, 0.0, 0.0)
    # every query's rows four times over: as independent rows the interval would be half as wide
    rep = np.repeat(np.arange(n), 4)
    naive = auc_delta_interval(y[rep], better[rep], worse[rep], n_boot=300)
    grouped = auc_delta_interval(y[rep], better[rep], worse[rep], groups=rep, n_boot=300)
    assert grouped[0] == pytest.approx(delta)
    assert grouped[2] - grouped[1] > 1.5 * (naive[2] - naive[1])
    assert grouped[2] - grouped[1] == pytest.approx(hi - lo, rel=0.3)


def test_leave_one_language_out_never_trains_on_a_query_of_the_held_out_language(qc, monkeypatch):
    """de, en, it and pl share queries with other languages: such a query must not be in training."""
    from mlsearch_lib.config.profiles import load_profile
    from mlsearch_lib.evaluation import experiments

    df = qc.copy()
    a, b = sorted(df["language"].unique())[:2]
    to = df.index[df["language"] == b][:3]
    df.loc[to, "origin_query"] = df.loc[df.index[df["language"] == a][:3], "origin_query"].to_numpy()  # a's queries in b
    seen: dict[str, set] = {}
    fit = experiments.RelevanceModel.fit

    def recording_fit(self, train, *args, **kwargs):
        seen[len(seen)] = set(train["origin_query"].map(normalize_text))
        return fit(self, train, *args, **kwargs)

    monkeypatch.setattr(experiments.RelevanceModel, "fit", recording_fit)
    folds = grouped_folds(df, 3, seed=0)
    table = experiments.leave_one_language_out("QC", load_profile("tiny"), df, folds, np.full(len(df), 0.5))
    languages = sorted(df["language"].unique())
    assert list(table.index) == languages and len(seen) == len(languages)
    for i, lang in enumerate(languages):
        held_out = set(df.loc[df["language"] == lang, "origin_query"].map(normalize_text))
        assert not seen[i] & held_out
        assert table.loc[lang, "training rows"] == sum(
            (df["language"] != lang) & ~df["origin_query"].map(normalize_text).isin(held_out))
    assert table.loc[a, "training rows"] <= (df["language"] != a).sum() - 3  # b's copies of a's queries left out


def test_the_tfidf_decomposition_reproduces_the_full_reference_and_reads_only_its_blocks(qc):
    from mlsearch_lib.config.profiles import load_profile
    from mlsearch_lib.evaluation import experiments
    from mlsearch_lib.models.relevance import RelevanceModel

    profile = load_profile("tiny")
    folds = grouped_folds(qc, 3, seed=0)
    table = experiments.tfidf_decomposition("QC", profile, qc, folds)
    assert list(table.index) == list(experiments.DECOMPOSITION)
    full = np.empty(len(qc))
    for i in range(3):  # the full row is the TF-IDF reference itself
        model = RelevanceModel("tfidf", "QC", profile)
        model.fit(qc[folds != i].reset_index(drop=True))
        full[folds == i] = model.predict_proba(qc[folds == i].reset_index(drop=True))
    assert table.loc["full (+ shared n-grams: interaction)", "roc_auc"] == pytest.approx(
        roc_auc_score(qc["label"], full), abs=1e-9)
    # the synthetic labels are a pair property (query matches category): priors alone cannot reach it
    assert table.loc["query only", "roc_auc"] < table.loc["full (+ shared n-grams: interaction)", "roc_auc"]
    widths = {b: TfidfPair(blocks=b) for b in [("query",), ("query", "item", "overlap")]}
    pairs = [("lego set", "toys,blocks"), ("robe", "women,dresses")]
    for model in widths.values():
        model.fit(pairs * 3, np.array([1, 0] * 3))
    assert widths[("query",)]._features(pairs).shape[1] * 3 + 1 == widths[("query", "item", "overlap")]._features(pairs).shape[1]


def test_seed_spread_gives_each_seed_its_own_folds_and_every_pairwise_gain(isolated_outputs):
    from mlsearch_lib.config.profiles import load_profile
    from mlsearch_lib.evaluation.seed_spread import main

    out = main(["--profile", "tiny", "--task", "QC", "--kinds", "all_yes", "tfidf", "--seeds", "1", "2"])
    assert out.is_relative_to(isolated_outputs)
    text = out.read_text()
    from mlsearch_lib.evaluation import experiments

    folds = [experiments.prepare("QC", load_profile("tiny").model_copy(update={"seed": s}))[1] for s in (1, 2)]
    assert (folds[0] != folds[1]).any()  # another seed, another split
    assert text.count("| TF-IDF char n-gram + LR | all \"yes\"") == 2  # one gain row per seed
    assert "Δroc_auc mean" in text and "0.5000" in text  # all "yes" scores 0.5 under every split


def test_seed_spread_scores_a_stack_of_two_kinds_as_notebook_04_fits_it(isolated_outputs):
    from mlsearch_lib.config.profiles import load_profile
    from mlsearch_lib.evaluation import experiments
    from mlsearch_lib.evaluation.seed_spread import seed_spread
    from mlsearch_lib.models import stacking

    prof = load_profile("tiny")
    results, gains = seed_spread("QC", prof, ["tfidf", "bi_encoder", "tfidf+bi_encoder"], [3])
    df, folds = experiments.prepare("QC", prof.model_copy(update={"seed": 3}))
    oofs = {k: experiments.load_oof(prof.model_copy(update={"seed": 3}), "QC", k)["p_yes"].to_numpy()
            for k in ("tfidf", "bi_encoder")}
    p = stacking.stacked_oof(df["label"].to_numpy(), folds, oofs)[0]
    row = experiments.results_table(df, folds, {"s": p}).iloc[0]
    assert results.set_index("model").loc["tfidf+bi_encoder", "roc_auc"] == row["roc_auc"]
    assert set(gains.loc[gains["model"] == "tfidf+bi_encoder", "over"]) == {"tfidf", "bi_encoder"}
