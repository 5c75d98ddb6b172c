"""The per-student record: every stage's result, as JSON, written atomically.

The CSV and the feedback reports are derived from records only.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

SCHEMA = 1


@dataclass
class Record:
    net_id: str
    zip_name: str
    zip_sha256: str | None
    status: str                 # "graded" | "rejected" | "late_rejected" | "error"
    reason: str                 # one sentence for the CSV
    rubric: dict[str, str]      # name, digest
    intake: dict[str, Any] | None = None
    deadline: dict[str, Any] | None = None
    notebooks: dict[str, Any] = field(default_factory=dict)    # part id -> NotebookRun as dict
    items: list[dict[str, Any]] = field(default_factory=list)  # ItemResult as dicts
    penalties: list[dict[str, Any]] = field(default_factory=list)
    score: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
    graded_at: str = ""
    inputs_digest: str = ""     # what the grade depends on besides the zip; see runner.inputs_digest
    flags: dict[str, str] = field(default_factory=dict)   # why staff should look at the whole record,
                                # set by the batch from all its records (batch.flag_duplicates)
    judged: dict[str, dict[str, Any]] = field(default_factory=dict)   # item id -> {"digest", "result"}:
                                # the item's own finding before gating, kept so that a regrade
                                # re-judges only the items whose inputs or rubric entry changed
    lms: dict[str, Any] = field(default_factory=dict)   # from an LMS download: display name, how the
                                # net id was found, every attempt, the graded one (grader/lms/)
    schema: int = SCHEMA
    complete: bool = True       # False: the grader failed on it (or was rebuilding it); the next run grades it again


def safe_key(name: str) -> str:
    """``name`` reduced to letters, digits and ``._-`` (at most 100 characters); not one-to-one."""
    key = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "submission"
    return key[:100]


def zip_key(name: str) -> str:
    """The file name of everything the grader keeps for one zip (record, work folder): the zip's
    own name when it is already a safe name, else its safe name, ``+`` and a hash of the exact
    name. No safe name holds a ``+``, so two different zip names never share a key."""
    key = safe_key(name)
    if key == name:
        return key
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return f"{key}+{digest}"


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: a reader (or a
    rerun after a crash) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; staff share these files like any other output
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save(record: Record, path: Path) -> None:
    write_atomic(path, json.dumps(to_jsonable(record), indent=1, sort_keys=False) + "\n")


def load(path: Path) -> Record:
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: record schema {data.get('schema')} is not {SCHEMA}")
    names = {f.name for f in dataclasses.fields(Record)}
    return Record(**{k: v for k, v in data.items() if k in names})
