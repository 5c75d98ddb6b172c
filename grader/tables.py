"""Staff tables (CSV): submission times, extensions, staff scores, overrides.

A table is read only from a file staff name: its own flag, or its standard file name in a
tables folder staff name (``--tables DIR``); never from the folder of submissions, where
anything a student uploads can land. Each reader fails with a message that names the file,
the line and what to write instead.
"""
from __future__ import annotations

import csv
import math
from datetime import datetime, timedelta
from pathlib import Path


class TableError(ValueError):
    """A staff CSV that cannot be read as it is."""


# table -> (its standard file name in a tables folder, what it is called in messages)
TABLES = {"times": ("submission_times.csv", "submission times"),
          "extensions": ("extensions.csv", "extensions"),
          "staff_scores": ("staff_scores.csv", "staff scores"),
          "overrides": ("overrides.csv", "overrides")}


def named_tables(files: dict[str, Path | None], folder: Path | None) -> dict[str, Path | None]:
    """The file of each table in ``TABLES``: the one named for it in ``files``, else its standard
    file in the tables folder ``folder`` when that holds one, else None (no table)."""
    if folder is not None and not folder.is_dir():
        raise TableError(f"the tables folder {folder} is not a folder")
    out: dict[str, Path | None] = {}
    for key, (standard, _) in TABLES.items():
        path = files.get(key)
        if path is None and folder is not None and (folder / standard).is_file():
            path = folder / standard
        out[key] = path
    return out


def tables_line(paths: dict[str, Path | None]) -> str:
    """``submission times <path|none>; extensions ...; staff scores ...``"""
    return "; ".join(f"{TABLES[k][1]} {paths.get(k) or 'none'}" for k in TABLES)


def parse_time(text: str, where: str) -> datetime:
    text = text.strip()
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise TableError(f"{where}: {text!r} is not an ISO 8601 time such as 2025-10-05T23:12:00-04:00") from None
    if value.tzinfo is None:
        raise TableError(f"{where}: {text!r} has no UTC offset; write it like 2025-10-05T23:12:00-04:00")
    return value


def _rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise TableError(f"{path.name}: missing column(s) {', '.join(missing)}; "
                                 f"expected a header line: {','.join(required)}")
            reader.fieldnames = header
            return [(n, {k: (v or "").strip() for k, v in row.items() if k})
                    for n, row in enumerate(reader, start=2)]
    except OSError as e:
        raise TableError(f"cannot read {path}: {e.strerror}") from None


def load_times(path: Path) -> dict[str, datetime]:
    """``net_id,submitted_at`` with UTC offsets. A student listed twice keeps the latest time."""
    times: dict[str, datetime] = {}
    for n, row in _rows(path, ("net_id", "submitted_at")):
        net_id = row["net_id"].lower()
        if not net_id:
            continue
        t = parse_time(row["submitted_at"], f"{path.name} line {n}")
        times[net_id] = max(t, times.get(net_id, t))
    return times


def load_extensions(path: Path) -> dict[str, timedelta]:
    """``net_id,extension_hours``."""
    out: dict[str, timedelta] = {}
    for n, row in _rows(path, ("net_id", "extension_hours")):
        if not row["net_id"]:
            continue
        try:
            hours = float(row["extension_hours"])
        except ValueError:
            raise TableError(f"{path.name} line {n}: extension_hours {row['extension_hours']!r} is not a number") from None
        if hours < 0:
            raise TableError(f"{path.name} line {n}: extension_hours must not be negative")
        out[row["net_id"].lower()] = timedelta(hours=hours)
    return out


def load_staff_scores(path: Path, item_ids: set[str]) -> dict[str, dict[str, float]]:
    """Wide CSV: ``net_id`` then one column per staff-graded item id; empty cells are pending."""
    rows = _rows(path, ("net_id",))
    out: dict[str, dict[str, float]] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = [h.strip() for h in next(csv.reader(f), [])]
    unknown = [h for h in header if h and h != "net_id" and h not in item_ids]
    if unknown:
        raise TableError(f"{path.name}: column(s) {', '.join(unknown)} are not staff-graded items of the rubric "
                         f"(expected some of: {', '.join(sorted(item_ids))})")
    for n, row in rows:
        if not row["net_id"]:
            continue
        scores = {}
        for key, text in row.items():
            if key == "net_id" or not text:
                continue
            try:
                value = float(text)
            except ValueError:
                raise TableError(f"{path.name} line {n}, column {key}: {text!r} is not a number") from None
            if not math.isfinite(value) or value < 0:
                raise TableError(f"{path.name} line {n}, column {key}: {text!r} must be a number >= 0")
            scores[key] = value
        out[row["net_id"].lower()] = scores
    return out


def load_overrides(path: Path, possible: dict[str, float]) -> dict[str, dict[str, dict]]:
    """Long CSV ``net_id,item,points,comment``: staff's word on any item (a theory question or
    an automatic one), which wins over what the grader found. ``possible``: item id -> points."""
    out: dict[str, dict[str, dict]] = {}
    for n, row in _rows(path, ("net_id", "item", "points")):
        if not row["net_id"]:
            continue
        item = row["item"]
        if item not in possible:
            raise TableError(f"{path.name} line {n}: {item!r} is not an item of the rubric "
                             f"(item ids look like {', '.join(sorted(possible)[:3])})")
        try:
            points = float(row["points"])
        except ValueError:
            raise TableError(f"{path.name} line {n}: points {row['points']!r} is not a number") from None
        if not math.isfinite(points) or not 0 <= points <= possible[item]:
            raise TableError(f"{path.name} line {n}: points {row['points']!r} must be between 0 and "
                             f"{possible[item]:g} (what {item} is worth)")
        mine = out.setdefault(row["net_id"].lower(), {})
        if item in mine:
            raise TableError(f"{path.name} line {n}: a second override of {item} for {row['net_id']}")
        mine[item] = {"points": points, "comment": row.get("comment", "")}
    return out
