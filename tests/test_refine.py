from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsearch_lib.config.profiles import RefineConfig
from mlsearch_lib.features.refine import apply_action, flag_rows, lexical_similarity, tokens


@pytest.mark.parametrize("query, item", [
    ("スマホケース 赤", "iPhone 13 対応 スマホケース 赤 シリコン"),   # Japanese
    ("블루투스 이어폰", "무선 블루투스이어폰 5.3 노이즈 캔슬링"),      # Korean, words glued
    ("เคสโทรศัพท์", "เคสโทรศัพท์ซิลิโคน สีแดง"),                  # Thai, no spaces
    ("ساعة رجالية", "ساعة يد رجالية جلد بني"),                      # Arabic
])
def test_similarity_is_non_trivial_in_every_script(query, item):
    sim = lexical_similarity([query, "zzz"], [item, "qqq"])
    assert sim.loc[0, "cos"] > 0.3 and sim.loc[0, "jaccard"] > 0.2
    assert sim.loc[1, "cos"] == 0 and sim.loc[1, "jaccard"] == 0


def test_tokens_fold_punctuation_and_split_unspaced_runs():
    assert tokens("Hello, WORLD!") == ["hello", "world"]
    assert tokens("スマホ") == ["スマ", "マホ"] and tokens("赤") == ["赤"]


def _frame():
    return pd.DataFrame({
        "language": ["en"] * 6,
        "origin_query": ["hdmi adapter", "red dress", "usb cable", "phone case", "lamp", "lamp shade"],
        "category_path": ["tv,cables", "women,dresses", "computer,usb cable", "phones,cases", "garden,tools", "home,lamp shade"],
        "label": [1, 1, 0, 1, 1, 0],
    })


def test_rules_and_reasons():
    df = _frame()
    p = np.array([0.8, 0.95, 0.3, 0.05, 0.6, 0.5])
    flags = flag_rows(df, "category_path", p, RefineConfig(min_language_rows=1000))
    assert flags.loc[3, "model"] and "model" in flags.loc[3, "qr_reason"]          # label 1, p <= 0.1
    assert flags.loc[0, "keyword"]                                                  # asks "hdmi"/"adapter", item lacks them
    assert flags.loc[2, "keyword"]                                                  # label 0 shares "usb"/"cable"
    assert not flags.loc[1, "qr_flag"]
    off = flag_rows(df, "category_path", p, RefineConfig(model_rule=False, keyword_rule=False, lexical_rule=False))
    assert not off["qr_flag"].any()


def test_actions():
    df = _frame()
    y = df["label"].to_numpy()
    p = np.array([0.8, 0.95, 0.99, 0.05, 0.6, 0.5])
    cfg = RefineConfig(min_language_rows=1000)
    flags = flag_rows(df, "category_path", p, cfg)
    labels, w = apply_action(y, p, flags, "drop", cfg)
    assert (labels == y).all() and (w[flags["qr_flag"]] == 0).all() and (w[~flags["qr_flag"]] == 1).all()
    labels, w = apply_action(y, p, flags, "down-weight", cfg)
    assert w[3] == pytest.approx(max(0.2, 1 - 0.95)) and (w <= 1).all()
    strong = (flags["model"] & flags["lexical"]).to_numpy()
    labels, _ = apply_action(y, p, flags, "relabel", cfg)
    assert (labels[strong] == 1 - y[strong]).all() and (labels[~strong] == y[~strong]).all()
    with pytest.raises(ValueError):
        apply_action(y, p, flags, "burn", cfg)
