"""Read QC / QI files in the official schema (JSON lines or CSV) into a typed frame.

The official files are JSON lines with ``id, language, origin_query`` and ``category_path``
(QC) or ``item_title`` (QI), plus ``label`` where labelled. Bad input stops with an error that
names the file, the line and the field; an empty ``item_title`` (453 rows in the official QI
train) is kept and flagged, never dropped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

import numpy as np
import pandas as pd

Task = Literal["QC", "QI"]

#: The field each task compares the query with.
ITEM_FIELD: dict[str, str] = {"QC": "category_path", "QI": "item_title"}
REQUIRED = ("id", "language", "origin_query")


class DataFormatError(ValueError):
    """A row of an input file is malformed; the message is ``file:line: field 'x': why``."""

    def __init__(self, path: Path | str, line: int, field: str | None, why: str):
        where = f"{path}:{line}" + (f": field '{field}'" if field else "")
        super().__init__(f"{where}: {why}")
        self.path, self.line, self.field = str(path), line, field


def normalize_text(text: str) -> str:
    """Unicode NFKC, casefold, whitespace collapsed: the key for grouping equal queries."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def split_category(path: str) -> list[str]:
    """Split a category path into levels.

    Levels are joined by "," but level names contain ", " ("automobiles, parts & accessories"),
    so only a comma *not followed by a space* separates levels.
    """
    return [level.strip() for level in re.split(r",(?! )", path) if level.strip()]


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise DataFormatError(path, 0, None, "a directory, not a file")
    if not path.is_file():
        raise DataFormatError(path, 0, None, "no such file")


def _decoded(path: Path, lineno: int, raw: bytes) -> str:
    """One line as text: UTF-8 (a byte-order mark on the first line is dropped), else a located error."""
    try:
        return raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, lineno, None, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}): "
                              "save the file as UTF-8") from None


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) per non-blank line; malformed lines raise :class:`DataFormatError`."""
    path = Path(path)
    _check_file(path)
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = _decoded(path, lineno, raw)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(path, lineno, None, f"malformed JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(row, dict):
                raise DataFormatError(path, lineno, None, f"expected a JSON object, got {type(row).__name__}")
            yield lineno, row


def _rows_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    _check_file(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark would otherwise glue itself to the first header
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataFormatError(path, line, None, f"not UTF-8 (byte 0x{raw[exc.start]:02x}): save the file as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for row in reader:
        if None in row:  # more cells than the header has columns
            raise DataFormatError(path, reader.line_num, None, f"{len(reader.fieldnames or []) + len(row[None])} cells, "
                                  f"but the header has {len(reader.fieldnames or [])} columns")
        yield reader.line_num, row


def detect_task(fields: Iterable[str]) -> Task:
    fields = set(fields)
    for task, field in ITEM_FIELD.items():
        if field in fields:
            return task  # type: ignore[return-value]
    raise KeyError("neither 'category_path' (QC) nor 'item_title' (QI)")


def parse_id(value: Any) -> int | str:
    """An integer (or a string of digits) or a non-empty string; never null, a bool or a float (``1.0``
    beside ``1`` would be two ids, ``1.9`` is not an id)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError  # null, true, 1.0, 1.9, [1], {...}
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text:
        raise ValueError
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def unique_id(path: Path, lineno: int, value: Any, seen: dict[int | str, int], invalid: str = "not a valid id") -> int | str:
    """:func:`parse_id` of line ``lineno``, once per file: ``seen`` maps each id to its first line."""
    try:
        rid = parse_id(value)
    except ValueError:
        raise DataFormatError(path, lineno, "id", f"{invalid}: {value!r}") from None
    if rid in seen:
        raise DataFormatError(path, lineno, "id", f"duplicate id {rid!r} (first on line {seen[rid]})")
    seen[rid] = lineno
    return rid


def _parse_label(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip() in {"0", "1"}:
        return int(value.strip())
    raise ValueError


class TaskRows:
    """The validated rows of one QC or QI file, one at a time: what :func:`read_task_file` checks,
    without holding the file (``predict`` streams millions of pairs through it).

    Iterating yields ``(line number, record)`` and learns :attr:`task` (from the first row when
    not given), :attr:`labelled` and :attr:`int_ids` (every id so far an integer); ids are unique
    across the whole file. :meth:`frame` types a batch of records as the whole file would be typed.
    """

    def __init__(self, path: str | Path, task: Task | None = None) -> None:
        self.path, self.task = Path(path), task
        self.labelled: bool | None = None
        self.int_ids = True
        self.rows = 0

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        path = self.path
        rows_iter = _rows_csv(path) if path.suffix.lower() == ".csv" else iter_jsonl(path)
        seen: dict[int | str, int] = {}
        self.labelled, self.int_ids, self.rows = None, True, 0  # learnt again by every pass
        for lineno, row in rows_iter:
            if self.task is None:
                try:
                    self.task = detect_task(row)
                except KeyError as exc:
                    raise DataFormatError(path, lineno, None, f"cannot tell the task: {exc.args[0]}") from None
            task = self.task
            item = ITEM_FIELD[task]
            for field in (*REQUIRED, item):
                if field not in row:
                    raise DataFormatError(path, lineno, field, f"missing (a {task} row needs {', '.join((*REQUIRED, item))})")
            rid = unique_id(path, lineno, row["id"], seen)
            query = row["origin_query"]
            if not isinstance(query, str):
                raise DataFormatError(path, lineno, "origin_query", f"expected text, got {query!r}")
            if not query.strip():
                raise DataFormatError(path, lineno, "origin_query", f"empty query: {query!r}")
            language = row["language"]
            if not isinstance(language, str) or not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]+)?", language.strip()):
                raise DataFormatError(path, lineno, "language", f"expected a language code such as 'en', got {language!r}")
            text = row[item]
            if text is None:
                text = ""
            if not isinstance(text, str):
                raise DataFormatError(path, lineno, item, f"expected text, got {text!r}")
            if task == "QC" and not text.strip():
                raise DataFormatError(path, lineno, item, "empty category path")
            has_label = "label" in row and row["label"] not in (None, "")
            if self.labelled is None:
                self.labelled = has_label
            elif self.labelled != has_label:
                raise DataFormatError(path, lineno, "label", "present on some rows and absent on others")
            rec = dict(row)
            rec.update(id=rid, language=language.strip().lower(), origin_query=query, **{item: text})
            if has_label:
                try:
                    rec["label"] = _parse_label(row["label"])
                except ValueError:
                    raise DataFormatError(path, lineno, "label", f"must be 0 or 1, got {row['label']!r}") from None
            self.int_ids = self.int_ids and isinstance(rid, int)
            self.rows += 1
            yield lineno, rec
        if not self.rows:
            raise DataFormatError(path, 0, None, "no rows")

    def frame(self, records: list[dict[str, Any]], int_ids: bool | None = None) -> pd.DataFrame:
        """``records`` (rows this reader yielded) as a typed frame; ids are int64 when ``int_ids``
        (default: every id of ``records`` is an integer), else strings: pass the whole file's
        :attr:`int_ids` so that every batch of a file is typed alike."""
        task = self.task
        assert task is not None, "iterate the rows first"
        df = pd.DataFrame.from_records(records)
        item = ITEM_FIELD[task]
        front = [*REQUIRED, item] + (["label"] if self.labelled else [])
        df = df[front + [c for c in df.columns if c not in front]]
        if int_ids if int_ids is not None else all(isinstance(i, int) for i in df["id"]):
            df["id"] = df["id"].astype("int64")
        else:
            df["id"] = df["id"].astype(str)
        for col in ("language", "origin_query", item):
            df[col] = df[col].astype(str)
        if self.labelled:
            df["label"] = df["label"].astype("int8")
        if task == "QI":
            df["empty_title"] = df[item].str.strip() == ""
        df.attrs.update(task=task, path=str(self.path), labelled=bool(self.labelled))
        return df


def read_task_file(path: str | Path, task: Task | None = None) -> pd.DataFrame:
    """Read one QC or QI file (``.csv`` or JSON lines) into a typed, validated frame.

    Columns: ``id`` (int64 when every id is an integer, else string), ``language``,
    ``origin_query``, the item field, ``label`` (int8, only when the file is labelled), any
    extra fields as given, and for QI ``empty_title`` (bool). ``df.attrs`` holds ``task``,
    ``path`` and ``labelled``.
    """
    rows = TaskRows(path, task)
    return rows.frame([rec for _, rec in rows])


def stratified_sample(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """At most ``n`` rows, keeping each language's (and label's) share; ``None`` = all rows."""
    if n is None or len(df) <= n:
        return df
    keys = ["language"] + (["label"] if "label" in df else [])
    frac = n / len(df)
    parts = [g.sample(n=max(1, round(len(g) * frac)), random_state=seed) for _, g in df.groupby(keys, sort=True)]
    out = pd.concat(parts).sort_index()
    out.attrs = dict(df.attrs)
    return out


def fingerprint(paths: Iterable[str | Path]) -> str:
    """sha256 over the bytes of the given files (in order): names a data version in run metadata."""
    digest = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def category_depths(paths: pd.Series) -> pd.Series:
    return paths.map(lambda p: len(split_category(p))).astype(np.int64)


def load_training(task: Task, data_config: Any, seed: int) -> pd.DataFrame:
    """The labelled training file of ``task`` named by a profile's ``data`` section, sampled."""
    from mlsearch_lib.config.paths import data_file  # late: keeps this module importable without a data dir

    relative = data_config.qc_file if task == "QC" else data_config.qi_file
    df = read_task_file(data_file(relative), task=task)
    if not df.attrs["labelled"]:
        raise DataFormatError(df.attrs["path"], 1, "label", "a training file must be labelled")
    return stratified_sample(df, data_config.max_rows.get(task), seed).reset_index(drop=True)


def task_title(task: Task, data_config: Any) -> str:
    """How a task is named in every table and figure: QI on the stand-in says so."""
    return "QI (stand-in, English)" if task == "QI" and data_config.qi_standin else task
