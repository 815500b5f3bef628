"""The book's figures, drawn from the tables and out-of-fold p(yes) a notebook already holds.

Every function is pure: frames or arrays in, a :class:`matplotlib.figure.Figure` out, which the
notebook saves with :func:`mlsearch_lib.book.outputs.save_figure`. Figures are 9 inches wide, the
book's ~1000 px at its dpi of 110, so text stays legible without zooming. Colours come from
seaborn's colour-blind-safe palette; the two reference rows keep fixed greys in every figure (all
"yes" is ROC-AUC 0.5 by construction, TF-IDF is the model every gain is measured against), and a
model keeps its colour across the figures of a notebook as long as the models come in the same
order. Legends sit outside the axes, so they never hide a curve.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter, StrMethodFormatter
from sklearn.metrics import precision_recall_curve, roc_curve

from mlsearch_lib.models.relevance import LABELS

WIDTH = 9.0  # inches: ~1000 px at the book's dpi of 110
ALL_YES, TFIDF = LABELS["all_yes"], LABELS["tfidf"]
_REFERENCE_COLOURS = {ALL_YES: "0.6", TFIDF: "0.3"}
_FLAG_RULES = ("model", "lexical", "keyword")


def model_colours(models: Sequence[str]) -> dict[str, tuple[float, float, float] | str]:
    """A colour per model: greys for the references, the colour-blind palette in order for the rest
    (its grey left out, so no model is mistaken for a reference)."""
    palette = [c for i, c in enumerate(sns.color_palette("colorblind", 10)) if i != 7]
    others = [m for m in dict.fromkeys(models) if m not in _REFERENCE_COLOURS]
    colours: dict[str, tuple[float, float, float] | str] = {m: _REFERENCE_COLOURS[m] for m in models
                                                            if m in _REFERENCE_COLOURS}
    colours.update({m: palette[i % len(palette)] for i, m in enumerate(others)})
    return colours


def _wrap(label: str, width: int = 32) -> str:
    return textwrap.fill(label, width)


def _legend_below(fig: Figure, handles: list, labels: list[str], ncol: int = 2) -> None:
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False, fontsize=9)


def per_language_roc_auc(tables: Mapping[str, pd.DataFrame], reference: str = TFIDF,
                         baseline: str = ALL_YES) -> Figure:
    """ROC-AUC per language and model, one panel per task, from :func:`~mlsearch_lib.evaluation.
    experiments.per_language_table` frames (index ``(language, model)``, column ``roc_auc``).

    Bars rise from 0.5, the all-"yes" line, so a bar's height is what the model knows beyond chance;
    a dashed segment across each language marks the TF-IDF reference, so a bar above it is a gain.
    """
    fig = Figure(figsize=(WIDTH, 0.6 + 3.0 * len(tables)), layout="constrained")
    axes = fig.subplots(len(tables), 1, squeeze=False)[:, 0]
    models = list(dict.fromkeys(m for t in tables.values() for m in t.index.unique("model") if m != baseline))
    colours = model_colours(models)
    width = 0.8 / max(len(models), 1)
    for ax, (title, table) in zip(axes, tables.items()):
        auc = table["roc_auc"].unstack("model")
        languages = list(table.index.unique("language"))
        auc = auc.reindex(index=languages, columns=models)
        x = np.arange(len(languages))
        for i, model in enumerate(models):
            ax.bar(x - 0.4 + (i + 0.5) * width, auc[model] - 0.5, width, bottom=0.5, color=colours[model],
                   label=f"{model} (reference)" if model == reference else model)
        if reference in auc:
            ax.hlines(auc[reference], x - 0.42, x + 0.42, colors="0.15", linestyles="--", lw=1,
                      label=f"{reference}, across the models")
        ax.axhline(0.5, color=_REFERENCE_COLOURS[ALL_YES], lw=1.2, label=f'{baseline} (0.5)')
        low = np.nanmin(auc.to_numpy(), initial=0.5)
        ax.set_ylim(min(0.45, low - 0.02), min(1.0, np.nanmax(auc.to_numpy(), initial=0.5) + 0.03))
        ax.set_xticks(x, languages)
        pad = max(6 - len(languages), 0) / 2  # one or two languages: bars as wide as in a fuller panel
        ax.set_xlim(-0.5 - pad, len(languages) - 0.5 + pad)
        ax.set(title=title, ylabel="out-of-fold ROC-AUC")
        ax.grid(axis="x", visible=False)
    handles, labels = axes[0].get_legend_handles_labels()
    bars_first = sorted(range(len(labels)), key=lambda i: not hasattr(handles[i], "patches"))  # the models, then the lines
    _legend_below(fig, [handles[i] for i in bars_first], [labels[i] for i in bars_first])
    return fig


def roc_pr_curves(curves: Mapping[str, tuple[np.ndarray, Mapping[str, np.ndarray]]]) -> Figure:
    """ROC (left) and precision-recall (right) curves, one row per task, from ``{task: (y, {model:
    p(yes)})}``; rows without a p(yes) (split mode's train-only rows) are left out per model.

    The baselines say what a curve must beat: the diagonal on ROC and, on PR, the positive rate
    (what all "yes" scores at every recall) — with ~68% positives, PR-AUC is never near 0.
    """
    fig = Figure(figsize=(WIDTH, 1.0 + 3.4 * len(curves)), layout="constrained")
    axes = fig.subplots(len(curves), 2, squeeze=False)
    models = list(dict.fromkeys(m for _, ps in curves.values() for m in ps))
    colours = model_colours(models)
    for (roc_ax, pr_ax), (title, (y, ps)) in zip(axes, curves.items()):
        y = np.asarray(y).astype(int)
        for model, p in ps.items():
            p = np.asarray(p, dtype=float)
            keep = np.isfinite(p)
            fpr, tpr, _ = roc_curve(y[keep], p[keep])
            precision, recall, _ = precision_recall_curve(y[keep], p[keep])
            roc_ax.plot(fpr, tpr, color=colours[model], lw=1.4, label=model)
            pr_ax.plot(recall, precision, color=colours[model], lw=1.4, label=model)
        roc_ax.plot([0, 1], [0, 1], color=_REFERENCE_COLOURS[ALL_YES], ls="--", lw=1, label=f"chance ({ALL_YES})")
        pr_ax.axhline(y.mean(), color=_REFERENCE_COLOURS[ALL_YES], ls=":", lw=1.2,
                      label=f"positive rate ({ALL_YES})")
        roc_ax.set(title=f"{title}: ROC", xlabel="false positive rate", ylabel="true positive rate",
                   xlim=(0, 1), ylim=(0, 1.01))
        pr_ax.set(title=f"{title}: precision-recall", xlabel="recall", ylabel="precision", xlim=(0, 1),
                  ylim=(max(0.0, y.mean() - 0.1), 1.01))  # below the positive rate there is nothing to see
    handles, labels = axes[0, 0].get_legend_handles_labels()
    extra, extra_labels = axes[0, 1].get_legend_handles_labels()
    _legend_below(fig, handles + extra[-1:], labels + extra_labels[-1:])
    return fig


def model_comparison(tables: Mapping[str, pd.DataFrame], reference: str = TFIDF, baseline: str = ALL_YES) -> Figure:
    """ROC-AUC per model, one panel per task, each with the 95% interval of its gain over TF-IDF.

    Reads :func:`~mlsearch_lib.evaluation.experiments.results_table` frames: ``roc_auc`` and the
    query-grouped paired bootstrap's ``Δroc_auc 95% lo/hi`` (the book's one interval), placed at
    TF-IDF's ROC-AUC, so a model whose bar crosses the TF-IDF line has not shown a gain. All "yes"
    (0.5 by construction) is left out: its line would squeeze gains of a few hundredths into a sliver.
    """
    models = list(dict.fromkeys(m for t in tables.values() for m in t.index if m != baseline))
    colours = model_colours(models)
    fig = Figure(figsize=(WIDTH, 1.2 + 0.42 * len(models)), layout="constrained")
    axes = fig.subplots(1, len(tables), squeeze=False, sharey=True)[0]
    y = np.arange(len(models))[::-1]
    for ax, (title, table) in zip(axes, tables.items()):
        table = table.reindex(models)
        ref_auc = table.loc[reference, "roc_auc"] if reference in table.index else np.nan
        lo = ref_auc + table.get("Δroc_auc 95% lo", pd.Series(np.nan, index=models))
        hi = ref_auc + table.get("Δroc_auc 95% hi", pd.Series(np.nan, index=models))
        auc = table["roc_auc"]
        err = np.vstack([(auc - lo).clip(lower=0).fillna(0), (hi - auc).clip(lower=0).fillna(0)])
        for yi, model, a, e_lo, e_hi in zip(y, models, auc, *err):
            ax.errorbar(a, yi, xerr=[[e_lo], [e_hi]], fmt="o", color=colours[model], capsize=3, ms=6, lw=1.6)
            if np.isfinite(a) and model != reference:
                ax.annotate(f"{a - ref_auc:+.3f}", (a + e_hi, yi), xytext=(4, 0), textcoords="offset points",
                            va="center", fontsize=8, color="0.25")
        ax.axvline(ref_auc, color=_REFERENCE_COLOURS[TFIDF], ls="--", lw=1)
        ax.margins(x=0.15)
        ax.set_title(title)
        ax.grid(axis="y", visible=False)
    fig.supxlabel("out-of-fold ROC-AUC; dashed: the TF-IDF reference; bars: 95% interval of the gain over it "
                  "(bootstrap over queries), the gain beside", fontsize=10)
    axes[0].set_yticks(y, [_wrap(m) for m in models], fontsize=9)
    axes[0].set_ylim(-0.6, len(models) - 0.4)
    return fig


def with_stack(results: pd.DataFrame, stack: pd.DataFrame, name: str) -> pd.DataFrame:
    """``results`` plus the stack's row from :func:`~mlsearch_lib.evaluation.experiments.stacked_table`,
    its interval the one against TF-IDF (``… vs TF-IDF``), for :func:`model_comparison`."""
    row = stack.loc[[name]]
    against_tfidf = row.filter(like=" vs TF-IDF").rename(columns=lambda c: c.removesuffix(" vs TF-IDF"))
    return pd.concat([results, row.drop(columns=[c for c in row if c.startswith("Δ")]).join(against_tfidf)])


def reliability_by_task(curves: Mapping[str, Mapping[str, tuple[pd.DataFrame, float]]]) -> Figure:
    """Reliability diagrams, one panel per task, from ``{task: {model: (curve, ece)}}`` as
    :func:`~mlsearch_lib.evaluation.submission.reliability` returns them.

    One axis held a dozen curves in repeated colours; split by task, each model keeps one colour in
    both panels and the legend, below the panels, gives its ECE per task.
    """
    models = list(dict.fromkeys(m for per_model in curves.values() for m in per_model))
    colours = model_colours(models)
    side = min(WIDTH / max(len(curves), 1), 4.4)
    fig = Figure(figsize=(WIDTH, side + 0.7 + 0.24 * len(models)), layout="constrained")
    axes = fig.subplots(1, len(curves), squeeze=False, sharey=True)[0]
    for ax, (title, per_model) in zip(axes, curves.items()):
        ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=0.8)
        for model, (curve, _) in per_model.items():
            ax.plot(curve["mean_p"], curve["observed"], marker="o", ms=3.5, lw=1.3, color=colours[model], label=model)
        ax.set(title=title, xlabel="mean p(yes) in bin", xlim=(0, 1), ylim=(0, 1), aspect="equal")
    axes[0].set_ylabel("observed share of label 1")
    handles = {}
    for ax in axes:
        handles.update({label: h for h, label in zip(*ax.get_legend_handles_labels())})
    labels = []
    for model in models:
        ece = ", ".join(f"{title.split()[0]} {per_model[model][1]:.3f}" for title, per_model in curves.items()
                        if model in per_model)
        labels.append(f"{model} (ECE {ece})")
    _legend_below(fig, [handles[m] for m in models], labels, ncol=1)
    return fig


def smooth(values: Sequence[float] | np.ndarray, window: int = 9) -> np.ndarray:
    """Centred rolling mean (shorter at the ends), as long as ``values``: a minibatch loss is noisy
    enough that the trend only shows once neighbouring steps are averaged."""
    series = pd.Series(np.asarray(values, dtype=float))
    return series.rolling(max(1, window), center=True, min_periods=1).mean().to_numpy()


def learning_curve(curves: Mapping[str, pd.DataFrame], logs: Mapping[str, Sequence[Sequence[Mapping]]],
                   model: str, window: int = 9) -> Figure:
    """Left, out-of-fold ROC-AUC as the training rows grow (``train_rows``, ``roc_auc`` per task);
    right, ``model``'s training loss per task and fold (``[{step, loss}]`` per fold).

    The loss is smoothed (:func:`smooth`) over the faint raw trace. One colour per task in both
    panels, its folds alike, so the legend below needs one entry per task, and names every line.
    """
    fig = Figure(figsize=(WIDTH, 4.2), layout="constrained")
    curve_ax, loss_ax = fig.subplots(1, 2)
    tasks = list(dict.fromkeys([*curves, *logs]))
    colours = dict(zip(tasks, sns.color_palette("colorblind")))
    handles, labels = {}, {}
    for task, curve in curves.items():
        (handles[task],) = curve_ax.plot(curve["train_rows"], curve["roc_auc"], marker="o", color=colours[task])
        labels[task] = task
    curve_ax.set(xlabel="training rows (TF-IDF reference)", ylabel="out-of-fold ROC-AUC", title="Learning curve")
    curve_ax.xaxis.set_major_locator(MaxNLocator(5))
    curve_ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))  # 12,000 not 12000: ticks stay apart
    for task, folds in logs.items():
        folds = [log for log in folds if log]
        for log in folds:
            step, loss = [r["step"] for r in log], [r["loss"] for r in log]
            loss_ax.plot(step, loss, color=colours[task], lw=0.7, alpha=0.2)
            smoothed = smooth(loss, min(window, max(1, len(loss) // 5)))  # a short log is not averaged flat
            (handles[task],) = loss_ax.plot(step, smoothed, color=colours[task], lw=1.6, alpha=0.9)
        if folds:
            labels[task] = f"{task} (loss: {len(folds)} fold{'s' * (len(folds) != 1)})"
    loss_ax.set(xlabel="step", ylabel="training loss", title=_wrap(f"{model}: training loss", 48))
    if not loss_ax.get_lines():
        loss_ax.text(0.5, 0.5, "no training log\n(reference models train in one step)", ha="center",
                     va="center", transform=loss_ax.transAxes, color="0.4")
    legend = fig.legend([handles[t] for t in tasks], [labels[t] for t in tasks], loc="outside lower center",
                        ncol=len(tasks), frameon=False, fontsize=9)
    if loss_ax.get_lines():
        legend.set_title(f"loss: rolling mean of up to {window} logged steps (a fifth of a log at most), raw trace faint",
                         prop={"size": 8})
    return fig


def flags_per_language(shares: Mapping[str, pd.DataFrame], rules: Sequence[str] = _FLAG_RULES) -> Figure:
    """Share of rows each quality-refinement rule flags, per language, one panel per task.

    Horizontal bars: the language codes read along the axis instead of colliding. Panels are as
    wide as their languages need, so a task with one (the QI stand-in) gets a narrow panel of
    bars as thick as the others', not a wide panel of fat bars.
    """
    n_lang = max((len(s) for s in shares.values()), default=1)
    fig = Figure(figsize=(WIDTH, 1.4 + 0.1 * n_lang * max(1, len(rules))), layout="constrained")
    axes = fig.subplots(1, len(shares), squeeze=False, width_ratios=[max(len(s), 4) for s in shares.values()])[0]
    colours = dict(zip(rules, sns.color_palette("colorblind")))
    height = 0.8 / max(len(rules), 1)
    for ax, (title, share) in zip(axes, shares.items()):
        y = np.arange(len(share))[::-1] + (n_lang - len(share))  # the first language on top in every panel
        for i, rule in enumerate(rules):
            ax.barh(y + 0.4 - (i + 0.5) * height, share[rule], height, color=colours[rule], label=rule)
        ax.set_yticks(y, share.index.astype(str))
        ax.set_ylim(-0.6, n_lang - 0.4)
        ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", steps=[1, 2, 5, 10]))
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
        ax.set(title=_wrap(f"{title}: rows flagged", 28), xlabel="share of rows")
        ax.grid(axis="y", visible=False)
    axes[0].set_ylabel("language")
    handles, labels = axes[0].get_legend_handles_labels()
    _legend_below(fig, handles, labels, ncol=len(rules))
    return fig
