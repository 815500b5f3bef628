"""Quality refinement (QR): flag doubtful training labels, then drop, relabel or down-weight them.

Fixes of the seed's QR (anchors.md, "Their defects" 3 and 4): the model evidence is
*out-of-fold* p(yes) (a model never judges a row it trained on); the lexical similarity works in
every script (word tokens where words are spaced, character bigrams for Japanese, Korean, Thai and
other unspaced runs); and a flagged row may be relabelled or down-weighted, not only dropped.
Refinement only ever changes *training* labels/weights; every metric uses the untouched labels.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.feature_extraction.text import TfidfVectorizer

from mlsearch_lib.config.paths import RESOURCES_DIR
from mlsearch_lib.config.profiles import Profile, RefineConfig

# Runs of characters from scripts written without spaces between words (or agglutinative Hangul).
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af\u1100-\u11ff\u0e00-\u0e7f\u0e80-\u0eff\u1780-\u17ff]+")


def fold_text(text: str) -> str:
    """NFKC, casefold, and every punctuation or symbol character turned into a space."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(" " if unicodedata.category(ch)[0] in "PSZ" else ch for ch in text)


def tokens(text: str) -> list[str]:
    """Word tokens for spaced scripts; character bigrams (unigram if alone) for unspaced runs."""
    out: list[str] = []
    for word in fold_text(text).split():
        pos = 0
        for m in _UNSPACED.finditer(word):
            if m.start() > pos:
                out.append(word[pos:m.start()])
            run = m.group()
            out.extend([run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)])
            pos = m.end()
        if pos < len(word):
            out.append(word[pos:])
    return out


def lexical_similarity(queries: list[str], items: list[str]) -> pd.DataFrame:
    """TF-IDF cosine and Jaccard between each query and its category path / title."""
    vec = TfidfVectorizer(analyzer=tokens, sublinear_tf=True)
    vec.fit(list(queries) + list(items))
    q, i = vec.transform(queries), vec.transform(items)
    cos = np.asarray(q.multiply(i).sum(axis=1)).ravel()
    jac = []
    for a, b in zip(queries, items):
        sa, sb = set(tokens(a)), set(tokens(b))
        jac.append(len(sa & sb) / len(sa | sb) if sa | sb else 0.0)
    return pd.DataFrame({"cos": cos, "jaccard": np.asarray(jac)})


def load_keywords(name: str) -> list[str]:
    return [str(k) for k in yaml.safe_load((RESOURCES_DIR / name).read_text(encoding="utf-8"))["keywords"]]


def _lexical_thresholds(sim: pd.DataFrame, y: np.ndarray, lang: np.ndarray, cfg: RefineConfig) -> pd.DataFrame:
    """Per row: HI (cos, jac) from label-0 rows and LO (cos, jac) from label-1 rows of its language."""
    def bounds(m: np.ndarray) -> dict[str, float]:
        neg, pos = sim[m & (y == 0)], sim[m & (y == 1)]
        return {"hi_cos": np.percentile(neg["cos"], cfg.neg_percentile) if len(neg) else np.inf,
                "hi_jac": np.percentile(neg["jaccard"], cfg.neg_percentile) if len(neg) else np.inf,
                "lo_cos": np.percentile(pos["cos"], cfg.pos_percentile) if len(pos) else -np.inf,
                "lo_jac": np.percentile(pos["jaccard"], cfg.pos_percentile) if len(pos) else -np.inf}
    everywhere = bounds(np.ones(len(y), dtype=bool))
    per = {l: bounds(lang == l) if (lang == l).sum() >= cfg.min_language_rows else everywhere for l in set(lang)}
    return pd.DataFrame([per[l] for l in lang])


def flag_rows(df: pd.DataFrame, item_field: str, p_oof: np.ndarray, cfg: RefineConfig) -> pd.DataFrame:
    """Per row: similarity, each rule's verdict, ``qr_flag`` and ``qr_reason`` (rules joined by '+')."""
    y, lang = df["label"].to_numpy(), df["language"].to_numpy()
    sim = lexical_similarity(df["origin_query"].tolist(), df[item_field].tolist())
    th = _lexical_thresholds(sim, y, lang, cfg)
    rules = pd.DataFrame(index=df.index)
    rules["model"] = cfg.model_rule & (((y == 0) & (p_oof >= cfg.hi)) | ((y == 1) & (p_oof <= cfg.lo)))
    cos, jac = sim["cos"].to_numpy(), sim["jaccard"].to_numpy()
    # "> 0" keeps a degenerate HI of 0 (most label-0 rows share nothing) from flagging every negative
    lex_fp = (y == 0) & (((cos >= th["hi_cos"].to_numpy()) & (cos > 0)) | ((jac >= th["hi_jac"].to_numpy()) & (jac > 0)))
    lex_fn = (y == 1) & (cos < th["lo_cos"].to_numpy()) & (jac < th["lo_jac"].to_numpy())
    rules["lexical"] = cfg.lexical_rule & (lex_fp | lex_fn)
    keywords = load_keywords(cfg.keywords_file)
    kw = np.zeros(len(df), dtype=bool)
    if cfg.keyword_rule and keywords:
        pattern = re.compile(r"(?<!\w)(" + "|".join(re.escape(fold_text(k).strip()) for k in keywords) + r")(?!\w)")
        for n, (q, item, label) in enumerate(zip(df["origin_query"], df[item_field], y)):
            terms_q, terms_i = set(pattern.findall(fold_text(q))), set(pattern.findall(fold_text(item)))
            # a guard term the query asks for but the item lacks (label 1), or shares (label 0)
            kw[n] = bool(terms_q - terms_i) if label == 1 else bool(terms_q & terms_i)
    rules["keyword"] = kw
    out = pd.concat([sim.set_index(df.index), rules], axis=1)
    out["qr_flag"] = rules.any(axis=1)
    out["qr_reason"] = rules.apply(lambda r: "+".join(k for k in rules.columns if r[k]), axis=1)
    return out


def apply_action(y: np.ndarray, p_oof: np.ndarray, flags: pd.DataFrame, action: str, cfg: RefineConfig) -> tuple[np.ndarray, np.ndarray]:
    """Training labels and weights after ``none`` / ``drop`` / ``relabel`` / ``down-weight``.

    ``relabel`` flips a row only when the model and the lexical evidence agree (both rules fired);
    ``down-weight`` gives a flagged row weight ``1 − |p − y|`` (at least ``min_weight``).
    """
    labels, weights = y.copy(), np.ones(len(y))
    flagged = flags["qr_flag"].to_numpy()
    if action == "none":
        pass
    elif action == "drop":
        weights[flagged] = 0.0
    elif action == "relabel":
        strong = flags["model"].to_numpy() & flags["lexical"].to_numpy()
        labels[strong] = 1 - labels[strong]
    elif action == "down-weight":
        weights[flagged] = np.maximum(cfg.min_weight, 1 - np.abs(p_oof[flagged] - y[flagged]))
    else:
        raise ValueError(f"unknown action {action!r} (none, drop, relabel, down-weight)")
    return labels, weights


ACTIONS = ("none", "drop", "relabel", "down-weight")


def compare_actions(task: str, profile: Profile, df: pd.DataFrame, folds: np.ndarray, p_oof: np.ndarray,
                    flags: pd.DataFrame, kind: str, cache_dir: Path, cfg: RefineConfig) -> tuple[pd.DataFrame, dict]:
    """Out-of-fold F1 / ROC-AUC / PR-AUC of ``kind`` trained with each action, on the same folds
    and seed, always scored against the untouched labels."""
    from mlsearch_lib.evaluation.metrics import scores
    from mlsearch_lib.evaluation.thresholds import best_f1_threshold
    from mlsearch_lib.models.relevance import cross_validate

    y = df["label"].to_numpy()
    rows, preds = {}, {}
    for action in ACTIONS:
        labels, weights = apply_action(y, p_oof, flags, action, cfg)
        p, _ = cross_validate(kind, task, profile, df.assign(label=labels), folds, cache_dir,
                              weights=None if action in ("none", "relabel") else weights, log=lambda s: None)
        thr, f1 = best_f1_threshold(y, p)
        s = scores(y, p)
        rows[action] = {"rows changed": int((labels != y).sum() + (weights != 1).sum()), "f1@0.5": s["f1"],
                        "f1@tuned": f1, "roc_auc": s["roc_auc"], "pr_auc": s["pr_auc"]}
        preds[action] = p
    table = pd.DataFrame(rows).T.rename_axis("action")
    table["Δroc_auc vs none"] = table["roc_auc"] - table.loc["none", "roc_auc"]
    return table, preds


def refined_frame(df: pd.DataFrame, flags: pd.DataFrame, p_oof: np.ndarray, cfg: RefineConfig) -> pd.DataFrame:
    """The training set in its original schema plus ``qr_flag``, ``qr_reason``, ``qr_weight``."""
    _, weights = apply_action(df["label"].to_numpy(), p_oof, flags, "down-weight", cfg)
    return df.assign(qr_flag=flags["qr_flag"].to_numpy(), qr_reason=flags["qr_reason"].to_numpy(), qr_weight=weights)
