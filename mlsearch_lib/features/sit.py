"""SIT: semantic item-attribute tags for QI product titles, in all 13 competition languages.

The seed tagged English only, with regexes that had no word boundaries ("red" in "hundred",
"table" in "portable"), and its ``qc_leaf`` read a path that does not exist, so it was always
empty (anchors.md, "Their defects" 2 and 7). Here:

* Lexicons (``resources/lexicons/*.yaml``) map colour, material, style and product-type words of
  every language to one canonical English value; the English terms apply to every title, since
  titles mix English in.
* Boundaries work in every script. A term in a spaced script (Latin, Arabic...) needs a
  non-letter on both sides. Japanese/Chinese and Hangul terms of at least 2 characters, and Thai
  terms of at least 3 code points (Thai vowel and tone marks are code points of their own), match
  inside a run of text, because those scripts do not space words (and Hangul glues compounds:
  "실리콘케이스"); shorter ones must not touch a character of their own script ("赤" in
  "ケース 赤", never in "赤ちゃん" = baby). A lexicon term written with a leading/trailing "-" may
  end/start a compound ("-hülle" matches "Lederhülle"). Overlapping matches resolve
  leftmost-longest; "stop" phrases ("bluetooth", "ทองเหลือง" = brass) take part and are then
  dropped, so "blue" never fires inside them.
* Quantities are normalised, never converted: "6,7 cm" -> "6.7 cm", "67mm" -> "67 mm",
  "30 x 40 cm" -> "30x40 cm", "5.000 mAh" -> "5000 mAh" (``units.yaml`` says why).
* Models are device families with their number ("iphone 13 pro max", "galaxy s23 ultra") and
  alphanumeric codes ("sm-g991b", "a2337"). Brands come from a list plus one heuristic kept
  precise on purpose: a capitalised first word directly followed by a model code ("Blackview
  BV9300"). A brand after a compatibility marker ("case for Samsung") names the compatible
  device, not the maker, and is not reported as the brand.

The gold annotations in ``tests/fixtures/sit_labelled.jsonl`` follow the same scheme (only what
the title states, canonical values, no inference); :func:`mlsearch_lib.features.sit_eval.evaluate` scores the tagger on them.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Iterable, Mapping

import pandas as pd

from mlsearch_lib.data.records import normalize_text, split_category
from mlsearch_lib.features.sit_lexicon import (
    DIGITS,
    KEYS,
    LATIN,
    LEXICON_KEYS,
    NUM,
    brand_list,
    canonical_language,
    compat_patterns,
    device_models,
    lexicon_matcher,
    lexicon_words,
    parse_term,
    unit_patterns,
)

# -- extraction -----------------------------------------------------------------------------------

#: Languages whose titles write "1,500" for one thousand five hundred (elsewhere "1,5" is 1.5).
_COMMA_THOUSANDS = frozenset({"en", "ja", "ko", "th"})


def _number(text: str, unit: str, integer_units: frozenset[str], language: str = "en") -> str:
    """'6,70' -> '6.7'; '5.000' -> '5000' for units that are never fractional in practice."""
    if language in _COMMA_THOUSANDS and re.fullmatch(r"[1-9]\d{0,2}(?:,\d{3})+", text):
        text = text.replace(",", "")
    if unit in integer_units and re.fullmatch(r"[1-9]\d{0,2}(?:[.,]\d{3})+", text):
        text = re.sub(r"[.,]", "", text)
    elif text.count(",") + text.count(".") > 1:  # "1.234,5" / "1,234.5": the last mark is the decimal
        head, tail = re.split(r"[.,](?=\d+$)", text)
        text = re.sub(r"[.,]", "", head) + "." + tail
    text = text.replace(",", ".")
    try:
        value = Decimal(text)
    except InvalidOperation:
        return text
    return format(value.normalize(), "f")


def _quantities(text: str, language: str) -> tuple[dict[str, list[str]], list[tuple[int, int]]]:
    """Sizes, capacities, weights, power and voltage in ``text``, and the spans they cover."""
    units = unit_patterns(language)
    table, integer = units["table"], units["integer"]
    found: dict[str, list[str]] = {}
    spans: list[tuple[int, int]] = []
    masked = text
    for m in units["dims"].finditer(text):
        tail = units["length"].search(m.group())
        if not tail:
            continue  # "2x 2,0 Ah": no length unit at the end, not a dimension
        unit = table[parse_term(tail.group(1))[0]][1]
        numbers = [_number(n, unit, integer, language) for n in re.findall(NUM, m.group())]
        found.setdefault("size", []).append("x".join(numbers) + f" {unit}")
        spans.append(m.span())
        masked = masked[:m.start()] + " " * (m.end() - m.start()) + masked[m.end():]
    for m in units["quantity"].finditer(masked):
        written = m.group(3)
        attribute, unit = table[parse_term(written)[0]]
        if unit == "g" and written == "G":
            continue  # "5G" is a network, not five grams
        if written.lower() in ("in", "in.") and re.match(r"\s*(?:\d|one\b)", masked[m.end():], re.IGNORECASE):
            continue  # "2 in 1"
        if re.match(r"-[^\W\d_]", masked[m.end():]):
            continue  # "6 W-Shaped", "3 L-Bracket": a letter-word, not a unit
        low = _number(m.group(1), unit, integer, language)
        value = f"{low}-{_number(m.group(2), unit, integer, language)}" if m.group(2) else low
        found.setdefault(attribute, []).append(f"{value} {unit}")
        spans.append(m.span())
    for pattern in (units["sized"], units["sized_after"], units["letters"]):
        for m in pattern.finditer(text):
            found.setdefault("size", []).append(m.group(1).upper().replace(",", "."))
    return found, spans


def _inside(span: tuple[int, int], spans: Iterable[tuple[int, int]]) -> bool:
    return any(s <= span[0] and span[1] <= e for s, e in spans)


def _family_models(text: str) -> list[tuple[int, int, str]]:
    models = device_models()
    out = []
    for m in models["family"].finditer(text):
        family = models["keys"]["".join(m.group("fam").lower().split())]
        number = (m.group("num") or "").lower()
        if not number and family not in models["bare"]:
            continue
        suffixes = [models["suffixes"][s.group().lower()] for s in models["suffix"].finditer(m.group("suf") or "")]
        end = m.end() if number or suffixes else m.end("fam")
        out.append((m.start(), end, " ".join([family, number, *suffixes]).replace("  ", " ").strip()))
    return out


def _plausible_model(token: str) -> bool:
    """Letters and digits, no standard/count (IPX7, 10pcs), no word part ("12-Gauge", "108-LED", "Note12")."""
    if not any(c.isdigit() for c in token) or not any(c.isalpha() for c in token):
        return False
    if device_models()["stop"].fullmatch(token.lower()) or re.fullmatch(r"\d+-[A-Za-z]+", token):
        return False
    return not re.search(r"[a-z]{3}", token) and not any(
        re.fullmatch(r"\d*[A-Z]?[a-z]{2,}\d*", part) for part in token.split("-"))


def _is_code(token: str) -> bool:
    """A model code on its own: >= 4 characters with >= 2 digits and a capital letter."""
    alnum = token.replace("-", "")
    return (len(alnum) >= 4 and sum(c.isdigit() for c in alnum) >= 2 and any(c.isupper() for c in token)
            and _plausible_model(token))


def _model_codes(text: str, taken: list[tuple[int, int]]) -> list[tuple[int, int, str]]:
    out = []
    for m in re.finditer(r"(?<![A-Za-z0-9-])[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*(?![A-Za-z0-9-])", text):
        if _is_code(m.group()) and not _inside(m.span(), taken):
            out.append((m.start(), m.end(), m.group().lower()))
    return out


def _after_brand_model(text: str, end: int, unit_spans: list[tuple[int, int]]) -> tuple[int, int, str] | None:
    """A short model right after a known brand: "Samsung A52", "Huawei P30 Lite", "Xiaomi 13T"."""
    token = r"(?=[A-Za-z0-9-]*\d)(?=[A-Za-z0-9-]*[A-Za-z])[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*"  # letters and digits
    m = re.compile(rf"\s*({token})(?![{LATIN}-])").match(text, end)
    if not m or len(m.group(1)) > 12 or not _plausible_model(m.group(1)):
        return None
    span = m.span(1)
    if any(s < span[1] and span[0] < e for s, e in unit_spans):
        return None
    models = device_models()
    suffixes = []
    pos = span[1]
    while (s := re.compile(rf"\s*({models['suffix'].pattern})", re.IGNORECASE).match(text, pos)):
        suffixes.append(models["suffixes"][s.group(1).lower()])
        pos = s.end()
    return span[0], pos, " ".join([m.group(1).lower(), *suffixes])


def _is_compatible_device(text: str, start: int, end: int, language: str,
                          brand_spans: list[tuple[int, int]], model_spans: list[tuple[int, int, str]]) -> bool:
    """Whether the brand at ``start:end`` follows "for"/"para"/... or precedes "用"/"対応"/"호환"."""
    before, after, connectors = compat_patterns(language)
    markers = before.find(text[:start])
    if markers:
        gap = list(text[markers[-1][1]:start])
        offset = markers[-1][1]
        for s, e in brand_spans:
            if offset <= s and e <= start:
                gap[s - offset:e - offset] = " " * (e - s)
        rest = connectors.sub(" ", "".join(gap))
        if not rest.strip(" ,:"):
            return True
    pos = end
    while pos < len(text) and text[pos].isspace():
        pos += 1
    for s, e, _ in model_spans:
        if s == pos:
            pos = e
    return bool(after.match(text, pos))


def _heuristic_brand(text: str, language: str,
                     codes: list[tuple[int, int, str]]) -> tuple[str, tuple[int, int, str] | None] | None:
    """A capitalised first word directly followed by a model code ("Blackview BV9300 ...")."""
    m = re.match(r"\W*([A-Z][a-z]{2,14}|[A-Z]{3,10})(?=\s)", text)
    if not m:
        return None
    word = m.group(1).lower()
    models = device_models()
    if word in models["heuristic_stop"] or word in lexicon_words(language) or word in models["aliases"]:
        return None
    nxt = re.compile(r"\s+").match(text, m.end())
    pos = nxt.end() if nxt else m.end()
    if any(s == pos for s, _, _ in codes):
        return word, None
    short = re.compile(rf"[A-Z]{{1,3}}\d{{2,4}}[A-Z]?(?![{LATIN}-])").match(text, pos)
    if short and not models["stop"].fullmatch(short.group().lower()):
        return word, (short.start(), short.end(), short.group().lower())
    return None


def _extract(title: str, language: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    text = unicodedata.normalize("NFKC", title).translate(DIGITS)
    if not text.strip():
        return ()
    found: dict[str, list[str]] = {}
    quantities, unit_spans = _quantities(text, language)

    brand_matcher, ambiguous = brand_list()
    brand_hits = brand_matcher.find(text)
    families = [h for h in _family_models(text) if not _inside(h[:2], unit_spans)]
    models: list[tuple[int, int, str]] = list(families)
    brands: list[str] = []
    brand_spans = [(s, e) for s, e, _ in brand_hits]
    for start, end, name in brand_hits:
        family_next = any(end <= s <= end + 1 for s, _, _ in families)  # "Samsung Galaxy S23"
        short = None if family_next else _after_brand_model(text, end, unit_spans)  # "Samsung A52"
        if short:
            models.append(short)
        if name in ambiguous:  # "Apple iPhone 15", not "apple juice"
            at_start = not re.sub(r"\W", "", text[:start])
            if not text[start].isupper() or not (at_start or short or family_next):
                continue
        if not _is_compatible_device(text, start, end, language, brand_spans, models):
            brands.append(name)
    codes = _model_codes(text, unit_spans + [(s, e) for s, e, _ in models])
    models += codes
    if not brand_hits:
        guess = _heuristic_brand(text, language, codes)
        if guess:
            brands.append(guess[0])
            if guess[1]:
                models.append(guess[1])
    found["brand"] = brands
    found["model"] = [name for _, _, name in sorted(models)]

    masked = list(text)  # brand and model names are no colour, material or product type
    for s, e in brand_spans + [(s, e) for s, e, _ in models]:
        masked[s:e] = " " * (e - s)
    plain = "".join(masked)
    for attribute in LEXICON_KEYS:
        found[attribute] = [value for _, _, value in lexicon_matcher(attribute, language).find(plain)]
    for attribute, values in quantities.items():
        found[attribute] = values
    return tuple((k, tuple(dict.fromkeys(found[k]))) for k in KEYS if found.get(k))


@lru_cache(maxsize=262_144)
def _cached(title: str, language: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return _extract(title, language)


def tag_title(title: str, language: str) -> dict[str, list[str]]:
    """Attributes of one title: ``{key: [canonical values]}`` for the keys found (see :data:`KEYS`)."""
    if not isinstance(title, str):
        title = "" if title is None or (isinstance(title, float) and pd.isna(title)) else str(title)
    return {k: list(v) for k, v in _cached(title, canonical_language(language))}


def render(tags: Mapping[str, Iterable[str]]) -> str:
    """``product type: case, colour: red / black, ...`` in :data:`KEYS` order (what follows ``[ATTR]``)."""
    order = list(KEYS) + [k for k in tags if k not in KEYS]
    parts = [f"{k.replace('_', ' ')}: {' / '.join(tags[k])}" for k in order if tags.get(k)]
    return ", ".join(parts)


def tag_items(df: pd.DataFrame, leaf: pd.Series | None = None) -> pd.Series:
    """The rendered attributes of every row (column ``sit`` for the prompt builder); "" for empty titles.

    ``leaf`` (e.g. :func:`qc_leaf`) adds ``category: <leaf>`` where it is not empty. Tags are
    cached per (title, language): repeated titles cost nothing.
    """
    langs = df["language"].map(canonical_language) if "language" in df else pd.Series("en", index=df.index)
    titles = df["item_title"].fillna("").astype(str)
    out = [render(dict(_cached(t, l))) for t, l in zip(titles, langs)]
    if leaf is not None:
        leaves = leaf.reindex(df.index).fillna("").astype(str)
        out = [", ".join(p for p in (s, f"category: {c}" if c else "") if p) for s, c in zip(out, leaves)]
    return pd.Series(out, index=df.index, name="sit", dtype=object)


def coverage(df: pd.DataFrame) -> pd.DataFrame:
    """Share of titles with each attribute, per language (and "all"), with the number of titles."""
    langs = df["language"].map(canonical_language) if "language" in df else pd.Series("en", index=df.index)
    tags = [dict(_cached(t, l)) for t, l in zip(df["item_title"].fillna("").astype(str), langs)]
    has = pd.DataFrame([{k: k in t for k in KEYS} for t in tags], index=df.index, columns=list(KEYS), dtype=bool)
    has["any"] = has.any(axis=1)
    lang = df["language"].astype(str) if "language" in df else langs
    table = has.groupby(lang.to_numpy()).mean()
    table.loc["all"] = has.mean()
    table.insert(0, "titles", has.groupby(lang.to_numpy()).size().reindex(table.index).fillna(len(has)).astype(int))
    table.index.name = "language"
    return table


# -- QC leaf ----------------------------------------------------------------------------------------

def qc_leaf(qi: pd.DataFrame, qc: pd.DataFrame) -> pd.Series:
    """Per QI row, the leaf of a QC category judged for the same (normalised) query; "" when none.

    Only relevant categories count where QC is labelled (a label-0 row says the category does
    *not* fit the query, so its leaf would mislead); unlabelled QC rows all count. Among the
    candidates the most frequent leaf wins, ties broken alphabetically, so the result is
    deterministic. The seed's lookup read a missing path and was always empty.
    """
    keys = qc["origin_query"].astype(str).map(normalize_text)
    leaves = qc["category_path"].astype(str).map(lambda p: (split_category(p) or [""])[-1])
    frame = pd.DataFrame({"key": keys.to_numpy(), "leaf": leaves.to_numpy()})
    if "label" in qc:
        frame = frame[qc["label"].to_numpy() == 1]
    frame = frame[frame["leaf"] != ""]
    counts = frame.groupby(["key", "leaf"]).size().reset_index(name="n")
    best = counts.sort_values(["key", "n", "leaf"], ascending=[True, False, True]).drop_duplicates("key")
    lookup = dict(zip(best["key"], best["leaf"]))
    out = qi["origin_query"].astype(str).map(normalize_text).map(lookup).fillna("")
    return out.rename("qc_leaf").astype(object)


