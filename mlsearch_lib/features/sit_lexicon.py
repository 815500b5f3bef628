"""SIT's resources: the lexicons of 13 languages, brand and compatibility lists, units and
device families, each compiled once into a boundary-aware leftmost-longest matcher
(:class:`Matcher`). The matching rules are described in :mod:`mlsearch_lib.features.sit`."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any, Iterable

import yaml

from mlsearch_lib.config.paths import RESOURCES_DIR

LEXICONS = RESOURCES_DIR / "lexicons"
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
LATIN = "0-9" + _LETTERS  # characters of Latin-script words
DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
NUM = r"\d+(?:[.,]\d+)*"
_MISSING = object()


# -- boundary-aware leftmost-longest matching -----------------------------------------------------

def _neighbour_class(term: str, ch: str) -> str | None:
    """Characters that must not touch the end of ``term`` whose last/first character is ``ch``."""
    for cls, shortest in _RUN_SCRIPTS:
        if re.match(f"[{cls}]", ch):
            return None if len(re.findall(f"[{cls}]", term)) >= shortest else cls
    if re.match(f"[{LATIN}]", ch):
        return LATIN
    if re.match(r"\w", ch):
        return r"\w"
    return None  # punctuation ("black+decker", "ซม.") carries its own boundary


def parse_term(raw: Any) -> tuple[str, bool, bool]:
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
            term, open_left, open_right = parse_term(raw)
            if not term:
                continue
            left = None if open_left else _neighbour_class(term, term[0])
            right = None if open_right else _neighbour_class(term, term[-1])
            if hyphen_joins and right in (LATIN, r"\w"):
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


def canonical_language(language: Any) -> str:
    code = str(language or "").strip().lower()
    code = _LANGUAGE_ALIASES.get(code, code)
    return code if code in LANGUAGES else "en"


def _languages(language: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys((language, "en")))  # the title's language first, then English


@lru_cache(maxsize=None)
def lexicon_matcher(attribute: str, language: str) -> _Matcher:
    lex = load_lexicon(attribute)
    entries: list[tuple[Any, Any]] = []
    for lang in _languages(language):
        entries += [(t, None) for t in (lex.get("stop", {}).get(lang) or [])]
    for lang in _languages(language):
        for value, terms in (lex["terms"].get(lang) or {}).items():
            entries += [(t, value) for t in terms]
    return _Matcher(entries, hyphen_joins=attribute == "product_type")


@lru_cache(maxsize=None)
def lexicon_words(language: str) -> frozenset[str]:
    """Every lexicon term of the language and English: words that are never a brand."""
    words = set()
    for attribute in LEXICON_KEYS:
        lex = load_lexicon(attribute)
        for lang in _languages(language):
            for terms in (lex["terms"].get(lang) or {}).values():
                words.update(parse_term(t)[0] for t in terms)
    return frozenset(words)


@lru_cache(maxsize=None)
def brand_list() -> tuple[_Matcher, frozenset[str]]:
    lex = load_lexicon("brand")
    matcher = _Matcher((alias, name) for name, aliases in lex["brands"].items() for alias in aliases)
    return matcher, frozenset(lex["ambiguous"])


@lru_cache(maxsize=None)
def compat_patterns(language: str) -> tuple[_Matcher, re.Pattern, re.Pattern]:
    lex = load_lexicon("brand")
    before = _Matcher((m, True) for lang in _languages(language) for m in (lex["compat_before"].get(lang) or []))
    after = re.compile(r"\s*(?:" + "|".join(map(re.escape, lex["compat_after"])) + ")")
    connectors = re.compile("|".join(
        f"(?<![{LATIN}]){re.escape(c)}(?![{LATIN}])" if c[0].isalnum() else re.escape(c)
        for c in sorted(lex["connectors"], key=len, reverse=True)), re.IGNORECASE)
    return before, after, connectors


@lru_cache(maxsize=None)
def unit_patterns(language: str) -> dict[str, Any]:
    """Unit regexes of a language: lengths (for dimensions), all units, garment-size patterns."""
    lex = load_lexicon("units")
    table: dict[str, tuple[str, str]] = {}  # written form -> (attribute, canonical unit)
    for block in (lex["languages"].get(language) or {}, lex["common"]):
        for attribute, units in block.items():
            for unit, forms in units.items():
                for form in forms:
                    table.setdefault(parse_term(form)[0], (attribute, unit))

    def alternation(forms: Iterable[str]) -> str:
        return _trie([(f, _neighbour_class(f, f[-1])) for f in forms])

    lengths = [f for f, (attribute, _) in table.items() if attribute == "size"]
    start = rf"(?<![{LATIN}_/.])(?<!\d,)"  # not inside a word, a number or a fraction (1/2 in.)
    words = lex["size_words"].get(language, []) + lex["size_words"]["en"]
    values = r"(?:XXXL|XXL|XL|XXS|XS|[2-6]XL|GG|EG|S|M|L|P|G|\d{2}(?:[.,]5)?)"
    word_alt = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
    return {
        "table": table,
        "integer": frozenset(lex["integer_units"]),
        "dims": re.compile(rf"{start}{NUM}(?:\s*(?:{alternation(lengths)}))?"
                           rf"(?:\s*[x×*]\s*{NUM}(?:\s*(?:{alternation(lengths)}))?){{1,2}}", re.IGNORECASE),
        "length": re.compile(rf"\s*({alternation(lengths)})$", re.IGNORECASE),
        "quantity": re.compile(rf"{start}({NUM})(?:\s*[-~–]\s*({NUM}))?(?:\s*|-)({alternation(table)})",
                               re.IGNORECASE),
        "sized": re.compile(rf"(?<![{LATIN}])(?:{word_alt})\s*:?\s*({values})(?![{LATIN}])", re.IGNORECASE),
        "sized_after": re.compile(rf"(?<![{LATIN}])({values})\s*サイズ"),
        "letters": re.compile(rf"(?<![{LATIN}-])(XXS|XS|XL|XXL|XXXL|[2-6]XL)(?![{LATIN}-])"),
    }


@lru_cache(maxsize=None)
def device_models() -> dict[str, Any]:
    lex = load_lexicon("model")
    aliases = {parse_term(a)[0]: name for name, items in lex["families"].items() for a in items}
    suffixes = {parse_term(a)[0]: name for name, items in lex["suffixes"].items() for a in items}
    # written "Apple Watch" or "AppleWatch": look families up without spaces
    keys = {a.replace(" ", ""): name for a, name in aliases.items()}

    def alt(forms: Iterable[str], glued_number: bool = False) -> str:
        parts = []
        for f in sorted(forms, key=len, reverse=True):
            body = r"\s*".join(re.escape(w) for w in f.split())
            left, right = _neighbour_class(f, f[0]), _neighbour_class(f, f[-1])
            if glued_number and right == LATIN:
                right = _LETTERS  # "iPhone13": the number may follow without a space
            parts.append(("" if left is None else f"(?<![{left}])") + body + ("" if right is None else f"(?![{right}])"))
        return "|".join(parts)

    token = rf"(?:\d{{1,4}}[a-z]{{0,2}}|[a-z]{{1,2}}\d{{1,4}}[a-z]{{0,2}}|xr|xs|x|se)(?![{LATIN}])"
    family = re.compile(rf"(?P<fam>{alt(aliases, glued_number=True)})(?:\s*(?P<num>{token}))?"
                        rf"(?P<suf>(?:\s*(?:{alt(suffixes)}))*)", re.IGNORECASE)
    return {"aliases": aliases, "keys": keys, "suffixes": suffixes, "family": family, "bare": frozenset(lex["bare"]),
            "suffix": re.compile(alt(suffixes), re.IGNORECASE),
            "stop": re.compile("|".join(f"(?:{p})" for p in lex["code_stop"])),
            "heuristic_stop": frozenset(load_lexicon("brand")["heuristic_stop"])}


