"""The book's figures on a few dozen synthetic rows: each one renders, and shows what it claims."""

from __future__ import annotations

from itertools import pairwise

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb

from mlsearch_lib.book import figures
from mlsearch_lib.evaluation import experiments
from mlsearch_lib.evaluation.submission import reliability

TFIDF, ALL_YES, ENCODER = figures.TFIDF, figures.ALL_YES, "e5 cross-encoder"
TASKS = ("QC", "QI (stand-in, English)")


def _rows(seed: int, n: int = 48) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Rows in three languages, two queries each of four rows, and three models' p(yes): all "yes",
    a weak TF-IDF and a stronger encoder."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.65).astype(int)
    y[:2] = [0, 1]
    df = pd.DataFrame({"language": np.resize(["de", "en", "ja"], n), "origin_query": [f"q{i // 4}" for i in range(n)],
                       "label": y})
    oofs = {"all_yes": np.ones(n), "tfidf": np.clip(0.5 * y + rng.random(n) * 0.8, 0, 1),
            "encoder": np.clip(0.7 * y + rng.random(n) * 0.6, 0, 1)}
    return df, oofs


def _saved(fig, tmp_path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    assert path.stat().st_size > 5000


def _legend_labels(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


@pytest.fixture(scope="module")
def data():
    return {task: _rows(seed) for seed, task in enumerate(TASKS)}


def test_per_language_bars_rise_from_all_yes_and_mark_tfidf(data, tmp_path):
    tables = {task: experiments.per_language_table(df, oofs, {}) for task, (df, oofs) in data.items()}
    fig = figures.per_language_roc_auc(tables)
    _saved(fig, tmp_path, "per_language")
    assert len(fig.axes) == len(TASKS)
    assert _legend_labels(fig) == [f"{TFIDF} (reference)", ENCODER, f"{TFIDF}, across the models", 'all "yes" (0.5)']
    ax, table = fig.axes[0], tables["QC"]
    bars = next(c for c in ax.containers if c.get_label() == ENCODER)
    tops = [b.get_y() + b.get_height() for b in bars]
    expected = table.xs(ENCODER, level="model")["roc_auc"]
    assert np.allclose(tops, expected) and [b.get_y() for b in bars] == [0.5] * len(expected)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["de", "en", "ja", "all"]


def test_roc_curves_run_corner_to_corner_and_pr_has_the_positive_rate(data, tmp_path):
    curves = {task: (df["label"].to_numpy(), {figures.LABELS[k]: p for k, p in oofs.items() if k != "all_yes"})
              for task, (df, oofs) in data.items()}
    curves["QC"][1][TFIDF][:3] = np.nan  # split mode: rows without a p(yes) are left out
    fig = figures.roc_pr_curves(curves)
    _saved(fig, tmp_path, "roc_pr")
    assert len(fig.axes) == 2 * len(TASKS)
    assert _legend_labels(fig) == [TFIDF, ENCODER, 'chance (all "yes")', 'positive rate (all "yes")']
    for roc_ax, pr_ax, (y, _) in zip(fig.axes[::2], fig.axes[1::2], curves.values()):
        for line in roc_ax.get_lines()[:2]:
            x, yy = line.get_data()
            assert (x[0], yy[0]) == (0, 0) and (x[-1], yy[-1]) == (1, 1)
            assert np.all(np.diff(x) >= 0)
        assert pr_ax.get_lines()[-1].get_ydata()[0] == pytest.approx(y.mean())


def test_model_comparison_places_the_bootstrap_interval_of_the_gain(data, tmp_path):
    tables = {task: experiments.results_table(df, np.arange(len(df)) % 3, oofs) for task, (df, oofs) in data.items()}
    fig = figures.model_comparison(tables)
    _saved(fig, tmp_path, "comparison")
    assert len(fig.axes) == len(TASKS)
    table, ax = tables["QC"], fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [TFIDF, ENCODER]
    encoder_bar = ax.containers[1]  # errorbar containers in model order
    (segment,) = encoder_bar.lines[2][0].get_segments()
    ref = table.loc[TFIDF, "roc_auc"]
    assert encoder_bar.lines[0].get_xdata()[0] == pytest.approx(table.loc[ENCODER, "roc_auc"])
    assert segment[:, 0] == pytest.approx(ref + table.loc[ENCODER, ["Δroc_auc 95% lo", "Δroc_auc 95% hi"]].to_numpy())
    assert ax.get_lines()[-1].get_xdata()[0] == pytest.approx(ref)  # the TF-IDF line
    assert [t.get_text() for t in ax.texts] == [f"{table.loc[ENCODER, 'Δroc_auc']:+.3f}"]
    assert "TF-IDF reference" in fig.get_supxlabel()


def test_with_stack_takes_the_interval_against_tfidf():
    results = pd.DataFrame({"roc_auc": [0.7], "Δroc_auc": [np.nan]}, index=[TFIDF])
    stack = pd.DataFrame({"roc_auc": [0.75, 0.8], "Δroc_auc": [np.nan, 0.01], "Δroc_auc 95% lo": [np.nan, -0.01],
                          "Δroc_auc vs TF-IDF": [0.05, 0.1], "Δroc_auc 95% lo vs TF-IDF": [0.02, 0.04]},
                         index=["base", "stack"])
    out = figures.with_stack(results, stack, "stack")
    assert list(out.index) == [TFIDF, "stack"]
    assert out.loc["stack", "Δroc_auc"] == 0.1 and out.loc["stack", "Δroc_auc 95% lo"] == 0.04


def test_reliability_has_a_panel_per_task_and_a_colour_per_model(data, tmp_path):
    curves = {task: {name: reliability(df["label"].to_numpy(), oofs[k]) for k, name in
                     (("tfidf", TFIDF), ("encoder", ENCODER), ("encoder", "stacked (submitted)"))}
              for task, (df, oofs) in data.items()}
    fig = figures.reliability_by_task(curves)
    _saved(fig, tmp_path, "reliability")
    assert len(fig.axes) == len(TASKS) and all(ax.get_legend() is None for ax in fig.axes)
    labels = _legend_labels(fig)
    assert [label.split(" (ECE")[0] for label in labels] == [TFIDF, ENCODER, "stacked (submitted)"]
    assert f"QC {curves['QC'][TFIDF][1]:.3f}" in labels[0]
    for ax in fig.axes:
        colours = [to_rgb(line.get_color()) for line in ax.get_lines()[1:]]
        assert len(colours) == 3 and len(set(colours)) == 3


def test_smoothing_keeps_the_length_and_calms_the_noise():
    noisy = 0.6 + 0.1 * np.random.default_rng(0).standard_normal(80)
    smoothed = figures.smooth(noisy, window=9)
    assert len(smoothed) == len(noisy) and np.isfinite(smoothed).all()
    assert np.std(smoothed) < 0.5 * np.std(noisy)
    assert figures.smooth([1.0, 1.0, 1.0], window=9) == pytest.approx([1.0, 1.0, 1.0])
    assert figures.smooth(noisy, window=1) == pytest.approx(noisy)


def test_learning_curve_legend_names_one_colour_per_task(tmp_path):
    rng = np.random.default_rng(1)

    def log() -> list[dict]:
        return [{"step": s, "loss": 0.7 - s / 2000 + 0.05 * rng.standard_normal()} for s in range(0, 300, 10)]

    curves = {task: pd.DataFrame({"train_rows": [10, 20, 40], "roc_auc": [0.6, 0.65, 0.7]}) for task in TASKS}
    fig = figures.learning_curve(curves, {"QC": [log(), log(), []], "QI (stand-in, English)": [log()]}, ENCODER)
    _saved(fig, tmp_path, "learning_curve")
    loss_ax = fig.axes[1]
    assert _legend_labels(fig) == ["QC (loss: 2 folds)", "QI (stand-in, English) (loss: 1 fold)"]
    assert all(ax.get_legend() is None for ax in fig.axes)  # below the panels, over no line
    lines = loss_ax.get_lines()
    assert len(lines) == 2 * 3  # raw and smoothed per non-empty fold
    raw, smoothed = lines[0], lines[1]
    assert len(raw.get_ydata()) == len(smoothed.get_ydata()) == 30
    assert raw.get_alpha() < smoothed.get_alpha() and raw.get_color() == smoothed.get_color()
    assert lines[0].get_color() == lines[2].get_color() != lines[4].get_color()
    legend_colours = [to_rgb(h.get_color()) for h in fig.legends[0].legend_handles]
    assert legend_colours == [to_rgb(lines[0].get_color()), to_rgb(lines[4].get_color())]
    assert [to_rgb(line.get_color()) for line in fig.axes[0].get_lines()] == legend_colours  # same colour, both panels


def test_a_short_log_is_not_averaged_flat(tmp_path):
    log = [{"step": s, "loss": loss} for s, loss in enumerate([0.74, 0.70, 0.72, 0.69], start=1)]
    fig = figures.learning_curve({}, {"QC": [log]}, ENCODER)
    _saved(fig, tmp_path, "learning_curve_short")
    raw, smoothed = fig.axes[1].get_lines()
    assert smoothed.get_ydata() == pytest.approx(raw.get_ydata())


def test_learning_curve_without_logs_says_so(tmp_path):
    fig = figures.learning_curve({"QC": pd.DataFrame({"train_rows": [10, 20], "roc_auc": [0.6, 0.7]})}, {"QC": [[]]},
                                 figures.TFIDF)
    _saved(fig, tmp_path, "learning_curve_empty")
    assert "no training log" in fig.axes[1].texts[0].get_text() and _legend_labels(fig) == ["QC"]


def test_flags_per_language_labels_do_not_collide(tmp_path):
    languages = ["ar", "de", "en", "es", "fr", "it", "ja", "ko", "pl", "pt"]
    rng = np.random.default_rng(2)
    shares = {"QC": pd.DataFrame(rng.random((10, 3)) * 0.04, index=languages, columns=["model", "lexical", "keyword"]),
              "QI (stand-in, English)": pd.DataFrame([[0.013, 0.046, 0.014]], index=["en"],
                                                     columns=["model", "lexical", "keyword"])}
    fig = figures.flags_per_language(shares)
    _saved(fig, tmp_path, "flags")
    assert len(fig.axes) == 2 and _legend_labels(fig) == ["model", "lexical", "keyword"]
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    for ax, share in zip(fig.axes, shares.values()):
        ticks = ax.get_yticklabels()
        assert [t.get_text() for t in ticks] == list(share.index)
        boxes = sorted((t.get_window_extent(renderer) for t in ticks), key=lambda b: b.y0)
        assert all(lower.y1 <= upper.y0 for lower, upper in pairwise(boxes))
    left, right = (ax.get_tightbbox(renderer) for ax in fig.axes)
    assert left.x1 <= right.x0  # the second panel's labels stay clear of the first
