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
the title states, canonical values, no inference); :func:`evaluate` scores the tagger on them.
"""

from __future__ import annotations

import json
import re
import unicodedata
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd
import yaml

from .data import normalize_text, split_category

LEXICONS = Path(__file__).parent / "resources" / "lexicons"
#: The hand-labelled evaluation set (present in a source checkout, not in an installed wheel).
FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sit_labelled.jsonl"
LANGUAGES = ("en", "es", "fr", "pt", "de", "it", "pl", "ja", "ko", "th", "ar", "id", "vi")
LEXICON_KEYS = ("colour", "material", "style", "product_type")
#: Attribute keys, in the order :func:`render` writes them.
KEYS = ("product_type", "brand", "model", "colour", "material", "style",
        "size", "capacity", "weight", "power", "voltage")
_LANGUAGE_ALIASES = {"vn": "vi"}  # the official dev/test files write Vietnamese as "vn"

# Scripts written without spaces between words (Hangul: with glued compounds), each with the
# shortest term, in characters of that script, that may match inside a run of text.
_RUN_SCRIPTS = (
    ("\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f", 2),  # kana, Han
    ("\uac00-\ud7af\u1100-\u11ff\u3130-\u318f", 2),  # Hangul
    ("\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f\u1780-\u17ff", 3),  # Thai, Lao, Myanmar, Khmer
)
_LETTERS = "A-Za-z\u00c0-\u024f\u1e00-\u1eff"  # Latin-script letters (Vietnamese too)
_LATIN = "0-9" + _LETTERS  # characters of Latin-script words
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
_NUM = r"\d+(?:[.,]\d+)*"
_MISSING = object()


# -- boundary-aware leftmost-longest matching -----------------------------------------------------

def _neighbour_class(term: str, ch: str) -> str | None:
    """Characters that must not touch the end of ``term`` whose last/first character is ``ch``."""
    for cls, shortest in _RUN_SCRIPTS:
        if re.match(f"[{cls}]", ch):
            return None if len(re.findall(f"[{cls}]", term)) >= shortest else cls
    if re.match(f"[{_LATIN}]", ch):
        return _LATIN
    if re.match(r"\w", ch):
        return r"\w"
    return None  # punctuation ("black+decker", "ซม.") carries its own boundary


def _parse_term(raw: Any) -> tuple[str, bool, bool]:
    """(term, open_left, open_right): a leading/trailing "-" opens that side to compounds."""
    text = unicodedata.normalize("NFKC", str(raw)).strip()
    open_left, open_right = len(text) > 1 and text.startswith("-"), len(text) > 1 and text.endswith("-")
    if open_left:
        text = text[1:]
    if open_right:
        text = text[:-1]
    return " ".join(text.lower().split()), open_left, open_right


def _trie(items: list[tuple[str, str | None]]) -> str:
    """One regex for many terms; longer continuations are tried first, each end has its own lookahead."""
    root: dict[str, Any] = {}
    for term, right in items:
        node = root
        for ch in term:
            node = node.setdefault(ch, {})
        node.setdefault("", []).append(right)

    def emit(node: dict[str, Any]) -> str:
        alts = [(r"\s+" if ch == " " else re.escape(ch)) + emit(node[ch]) for ch in sorted(k for k in node if k)]
        if "" in node:
            rights = node[""]
            alts.append("" if None in rights else f"(?![{rights[0]}])")
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return emit(root)


class _Matcher:
    """Finds terms with per-term boundary rules; overlaps resolve leftmost-longest.

    ``entries`` are ``(raw term, value)``; the first value given for a term wins, and a value of
    ``None`` marks a stop phrase (it takes part in overlap resolution, then is dropped).
    """

    def __init__(self, entries: Iterable[tuple[Any, Any]], hyphen_joins: bool = False):
        groups: dict[str | None, list[tuple[str, str | None]]] = {}
        self.values: dict[str, Any] = {}
        for raw, value in entries:
            term, open_left, open_right = _parse_term(raw)
            if not term:
                continue
            left = None if open_left else _neighbour_class(term, term[0])
            right = None if open_right else _neighbour_class(term, term[-1])
            if hyphen_joins and right in (_LATIN, r"\w"):
                right += "-"
            groups.setdefault(left, []).append((term, right))
            self.values.setdefault(term, value)
        self.patterns = [re.compile(("" if left is None else f"(?<![{left}])") + _trie(items), re.IGNORECASE)
                         for left, items in groups.items()]

    def find(self, text: str, keep_stops: bool = False) -> list[tuple[int, int, Any]]:
        hits = []
        for pattern in self.patterns:
            for m in pattern.finditer(text):
                value = self.values.get(" ".join(m.group().lower().split()), _MISSING)
                if value is not _MISSING:
                    hits.append((m.start(), m.end(), value))
        hits.sort(key=lambda h: (h[0], h[0] - h[1]))
        out, end = [], -1
        for start, stop, value in hits:
            if start >= end:
                out.append((start, stop, value))
                end = stop
        return out if keep_stops else [h for h in out if h[2] is not None]


# -- resources ------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def load_lexicon(name: str) -> dict[str, Any]:
    """One YAML file of ``resources/lexicons`` (colour, material, style, product_type, units, brand, model)."""
    path = LEXICONS / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no lexicon {path}")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _language(language: Any) -> str:
    code = str(language or "").strip().lower()
    code = _LANGUAGE_ALIASES.get(code, code)
    return code if code in LANGUAGES else "en"


def _languages(language: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys((language, "en")))  # the title's language first, then English


@lru_cache(maxsize=None)
def _lexicon_matcher(attribute: str, language: str) -> _Matcher:
    lex = load_lexicon(attribute)
    entries: list[tuple[Any, Any]] = []
    for lang in _languages(language):
        entries += [(t, None) for t in (lex.get("stop", {}).get(lang) or [])]
    for lang in _languages(language):
        for value, terms in (lex["terms"].get(lang) or {}).items():
            entries += [(t, value) for t in terms]
    return _Matcher(entries, hyphen_joins=attribute == "product_type")


@lru_cache(maxsize=None)
def _lexicon_words(language: str) -> frozenset[str]:
    """Every lexicon term of the language and English: words that are never a brand."""
    words = set()
    for attribute in LEXICON_KEYS:
        lex = load_lexicon(attribute)
        for lang in _languages(language):
            for terms in (lex["terms"].get(lang) or {}).values():
                words.update(_parse_term(t)[0] for t in terms)
    return frozenset(words)


@lru_cache(maxsize=None)
def _brands() -> tuple[_Matcher, frozenset[str]]:
    lex = load_lexicon("brand")
    matcher = _Matcher((alias, name) for name, aliases in lex["brands"].items() for alias in aliases)
    return matcher, frozenset(lex["ambiguous"])


@lru_cache(maxsize=None)
def _compat(language: str) -> tuple[_Matcher, re.Pattern, re.Pattern]:
    lex = load_lexicon("brand")
    before = _Matcher((m, True) for lang in _languages(language) for m in (lex["compat_before"].get(lang) or []))
    after = re.compile(r"\s*(?:" + "|".join(map(re.escape, lex["compat_after"])) + ")")
    connectors = re.compile("|".join(
        f"(?<![{_LATIN}]){re.escape(c)}(?![{_LATIN}])" if c[0].isalnum() else re.escape(c)
        for c in sorted(lex["connectors"], key=len, reverse=True)), re.IGNORECASE)
    return before, after, connectors


@lru_cache(maxsize=None)
def _units(language: str) -> dict[str, Any]:
    """Unit regexes of a language: lengths (for dimensions), all units, garment-size patterns."""
    lex = load_lexicon("units")
    table: dict[str, tuple[str, str]] = {}  # written form -> (attribute, canonical unit)
    for block in (lex["languages"].get(language) or {}, lex["common"]):
        for attribute, units in block.items():
            for unit, forms in units.items():
                for form in forms:
                    table.setdefault(_parse_term(form)[0], (attribute, unit))

    def alternation(forms: Iterable[str]) -> str:
        return _trie([(f, _neighbour_class(f, f[-1])) for f in forms])

    lengths = [f for f, (attribute, _) in table.items() if attribute == "size"]
    start = rf"(?<![{_LATIN}_/.])(?<!\d,)"  # not inside a word, a number or a fraction (1/2 in.)
    words = lex["size_words"].get(language, []) + lex["size_words"]["en"]
    values = r"(?:XXXL|XXL|XL|XXS|XS|[2-6]XL|GG|EG|S|M|L|P|G|\d{2}(?:[.,]5)?)"
    word_alt = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
    return {
        "table": table,
        "integer": frozenset(lex["integer_units"]),
        "dims": re.compile(rf"{start}{_NUM}(?:\s*(?:{alternation(lengths)}))?"
                           rf"(?:\s*[x×*]\s*{_NUM}(?:\s*(?:{alternation(lengths)}))?){{1,2}}", re.IGNORECASE),
        "length": re.compile(rf"\s*({alternation(lengths)})$", re.IGNORECASE),
        "quantity": re.compile(rf"{start}({_NUM})(?:\s*[-~–]\s*({_NUM}))?(?:\s*|-)({alternation(table)})",
                               re.IGNORECASE),
        "sized": re.compile(rf"(?<![{_LATIN}])(?:{word_alt})\s*:?\s*({values})(?![{_LATIN}])", re.IGNORECASE),
        "sized_after": re.compile(rf"(?<![{_LATIN}])({values})\s*サイズ"),
        "letters": re.compile(rf"(?<![{_LATIN}-])(XXS|XS|XL|XXL|XXXL|[2-6]XL)(?![{_LATIN}-])"),
    }


@lru_cache(maxsize=None)
def _models() -> dict[str, Any]:
    lex = load_lexicon("model")
    aliases = {_parse_term(a)[0]: name for name, items in lex["families"].items() for a in items}
    suffixes = {_parse_term(a)[0]: name for name, items in lex["suffixes"].items() for a in items}
    # written "Apple Watch" or "AppleWatch": look families up without spaces
    keys = {a.replace(" ", ""): name for a, name in aliases.items()}

    def alt(forms: Iterable[str], glued_number: bool = False) -> str:
        parts = []
        for f in sorted(forms, key=len, reverse=True):
            body = r"\s*".join(re.escape(w) for w in f.split())
            left, right = _neighbour_class(f, f[0]), _neighbour_class(f, f[-1])
            if glued_number and right == _LATIN:
                right = _LETTERS  # "iPhone13": the number may follow without a space
            parts.append(("" if left is None else f"(?<![{left}])") + body + ("" if right is None else f"(?![{right}])"))
        return "|".join(parts)

    token = rf"(?:\d{{1,4}}[a-z]{{0,2}}|[a-z]{{1,2}}\d{{1,4}}[a-z]{{0,2}}|xr|xs|x|se)(?![{_LATIN}])"
    family = re.compile(rf"(?P<fam>{alt(aliases, glued_number=True)})(?:\s*(?P<num>{token}))?"
                        rf"(?P<suf>(?:\s*(?:{alt(suffixes)}))*)", re.IGNORECASE)
    return {"aliases": aliases, "keys": keys, "suffixes": suffixes, "family": family, "bare": frozenset(lex["bare"]),
            "suffix": re.compile(alt(suffixes), re.IGNORECASE),
            "stop": re.compile("|".join(f"(?:{p})" for p in lex["code_stop"])),
            "heuristic_stop": frozenset(load_lexicon("brand")["heuristic_stop"])}


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
    units = _units(language)
    table, integer = units["table"], units["integer"]
    found: dict[str, list[str]] = {}
    spans: list[tuple[int, int]] = []
    masked = text
    for m in units["dims"].finditer(text):
        tail = units["length"].search(m.group())
        if not tail:
            continue  # "2x 2,0 Ah": no length unit at the end, not a dimension
        unit = table[_parse_term(tail.group(1))[0]][1]
        numbers = [_number(n, unit, integer, language) for n in re.findall(_NUM, m.group())]
        found.setdefault("size", []).append("x".join(numbers) + f" {unit}")
        spans.append(m.span())
        masked = masked[:m.start()] + " " * (m.end() - m.start()) + masked[m.end():]
    for m in units["quantity"].finditer(masked):
        written = m.group(3)
        attribute, unit = table[_parse_term(written)[0]]
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
    models = _models()
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
    if _models()["stop"].fullmatch(token.lower()) or re.fullmatch(r"\d+-[A-Za-z]+", token):
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
    m = re.compile(rf"\s*({token})(?![{_LATIN}-])").match(text, end)
    if not m or len(m.group(1)) > 12 or not _plausible_model(m.group(1)):
        return None
    span = m.span(1)
    if any(s < span[1] and span[0] < e for s, e in unit_spans):
        return None
    models = _models()
    suffixes = []
    pos = span[1]
    while (s := re.compile(rf"\s*({models['suffix'].pattern})", re.IGNORECASE).match(text, pos)):
        suffixes.append(models["suffixes"][s.group(1).lower()])
        pos = s.end()
    return span[0], pos, " ".join([m.group(1).lower(), *suffixes])


def _is_compatible_device(text: str, start: int, end: int, language: str,
                          brand_spans: list[tuple[int, int]], model_spans: list[tuple[int, int, str]]) -> bool:
    """Whether the brand at ``start:end`` follows "for"/"para"/... or precedes "用"/"対応"/"호환"."""
    before, after, connectors = _compat(language)
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
    models = _models()
    if word in models["heuristic_stop"] or word in _lexicon_words(language) or word in models["aliases"]:
        return None
    nxt = re.compile(r"\s+").match(text, m.end())
    pos = nxt.end() if nxt else m.end()
    if any(s == pos for s, _, _ in codes):
        return word, None
    short = re.compile(rf"[A-Z]{{1,3}}\d{{2,4}}[A-Z]?(?![{_LATIN}-])").match(text, pos)
    if short and not models["stop"].fullmatch(short.group().lower()):
        return word, (short.start(), short.end(), short.group().lower())
    return None


def _extract(title: str, language: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    text = unicodedata.normalize("NFKC", title).translate(_DIGITS)
    if not text.strip():
        return ()
    found: dict[str, list[str]] = {}
    quantities, unit_spans = _quantities(text, language)

    brand_matcher, ambiguous = _brands()
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
        found[attribute] = [value for _, _, value in _lexicon_matcher(attribute, language).find(plain)]
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
    return {k: list(v) for k, v in _cached(title, _language(language))}


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
    langs = df["language"].map(_language) if "language" in df else pd.Series("en", index=df.index)
    titles = df["item_title"].fillna("").astype(str)
    out = [render(dict(_cached(t, l))) for t, l in zip(titles, langs)]
    if leaf is not None:
        leaves = leaf.reindex(df.index).fillna("").astype(str)
        out = [", ".join(p for p in (s, f"category: {c}" if c else "") if p) for s, c in zip(out, leaves)]
    return pd.Series(out, index=df.index, name="sit", dtype=object)


def coverage(df: pd.DataFrame) -> pd.DataFrame:
    """Share of titles with each attribute, per language (and "all"), with the number of titles."""
    langs = df["language"].map(_language) if "language" in df else pd.Series("en", index=df.index)
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


# -- evaluation -------------------------------------------------------------------------------------

def load_fixture(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Rows ``{id, language, item_title, gold}`` of a hand-labelled JSON-lines file (default :data:`FIXTURE`)."""
    path = Path(path) if path is not None else FIXTURE
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _rows(rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> list[Mapping[str, Any]]:
    return rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)


def disagreements(rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Per row and attribute where tagger and gold differ: the values ``missed`` and the ``extra`` ones."""
    out = []
    for row in _rows(rows):
        pred, gold = tag_title(row["item_title"], row["language"]), row.get("gold") or {}
        for key in KEYS:
            p, g = set(pred.get(key, [])), set(gold.get(key, []))
            if p != g:
                out.append({"id": row.get("id"), "language": row["language"], "attribute": key,
                            "missed": sorted(g - p), "extra": sorted(p - g), "item_title": row["item_title"]})
    return pd.DataFrame(out, columns=["id", "language", "attribute", "missed", "extra", "item_title"])


def evaluate(rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Micro precision, recall and F1 per attribute and overall (exact match of canonical values).

    ``support`` is the number of gold values, ``predicted`` the number of tagged ones; a ratio
    with a zero denominator is NaN.
    """
    counts = {k: [0, 0, 0] for k in KEYS}  # tp, fp, fn
    for row in _rows(rows):
        pred, gold = tag_title(row["item_title"], row["language"]), row.get("gold") or {}
        unknown = set(gold) - set(KEYS)
        if unknown:
            raise KeyError(f"row {row.get('id')}: unknown attribute(s) {sorted(unknown)}")
        for key in KEYS:
            p, g = set(pred.get(key, [])), set(gold.get(key, []))
            counts[key][0] += len(p & g)
            counts[key][1] += len(p - g)
            counts[key][2] += len(g - p)
    table = pd.DataFrame(counts, index=["tp", "fp", "fn"]).T
    table.loc["overall"] = table.sum()
    tp, fp, fn = (table[c].astype(float) for c in ("tp", "fp", "fn"))
    precision = (tp / (tp + fp)).where(tp + fp > 0)
    recall = (tp / (tp + fn)).where(tp + fn > 0)
    table["precision"], table["recall"] = precision, recall
    table["f1"] = (2 * precision * recall / (precision + recall)).where(precision + recall > 0)
    table["support"], table["predicted"] = table["tp"] + table["fn"], table["tp"] + table["fp"]
    table.index.name = "attribute"
    return table[["precision", "recall", "f1", "support", "predicted", "tp", "fp", "fn"]]
