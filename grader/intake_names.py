"""Names in a submission: the net id a zip's file name says, and how a member's name is matched
with a required file (case, separators, duplicate suffixes, the student's id added)."""
from __future__ import annotations

import re
from pathlib import PurePosixPath

from grader.lms.names import original_name


ASSIGNMENT_TOKEN = re.compile(r"(?:hw|lab|ps|homework)\d{1,2}")


def _sanitize(stem: str) -> str:
    s = re.sub(r"[^a-z0-9._-]+", "_", stem.lower()).strip("._-")
    return s[:64] or "unknown"


def netid_from_filename(name: str, pattern: str) -> tuple[str, bool]:
    """(net_id, name_is_correct) for a submitted zip's file name.

    Correct means exactly ``<net id>.zip`` once an LMS prefix is removed. Otherwise the
    net id is the first token matching ``pattern`` (tokens that look like an assignment's
    name, ``lab3`` or ``ps2``, lose to any other match and never count as correct), lowercased, else
    the sanitized stem.
    """
    orig = original_name(PurePosixPath(name.replace("\\", "/")).name)
    rx = re.compile(pattern)
    if orig.endswith(".zip") and rx.fullmatch(orig[:-4]) and not ASSIGNMENT_TOKEN.fullmatch(orig[:-4]):
        return orig[:-4], True
    stem = orig[:-4] if orig.lower().endswith(".zip") else orig
    tokens = [t for t in re.split(r"[^a-z0-9]+", stem.lower()) if t]
    hits = [t for t in tokens if rx.fullmatch(t)]
    if not hits:
        hits = [m.group(0) for t in tokens if (m := rx.search(t))]
    if hits:
        preferred = [t for t in hits if not ASSIGNMENT_TOKEN.fullmatch(t)]
        return (preferred or hits)[0], False
    return _sanitize(stem), False




_DUP_SUFFIXES = (
    re.compile(r"\s*\(\d{1,3}\)$"),  # "name (1)", "name(2)"
    re.compile(r"-\d{1,2}$"),  # "name-1"
    re.compile(r"\s*-\s*copy(?:\s*\(\d{1,3}\))?$", re.IGNORECASE),  # Windows "name - Copy (2)"
)


def canon(stem: str) -> str:
    return re.sub(r"[\s._-]+", "", stem.lower())


def split_ext(base: str, ext: str) -> tuple[str, str]:
    """(stem, ext) with a repeated required extension collapsed: a.ipynb.ipynb -> a."""
    low = base.lower()
    if ext and low.endswith(ext):
        stem = base[: -len(ext)]
        while ext and stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
        return stem, ext
    stem, dot, tail = base.rpartition(".")
    return (stem, "." + tail.lower()) if dot and stem else (base, "")


def stem_variants(stem: str, net_id: str) -> set[str]:
    s = stem.strip()
    while s.lower().startswith("copy of "):
        s = s[8:].lstrip()
    out = {canon(s)}
    for rx in _DUP_SUFFIXES:
        t = rx.sub("", s)
        if t != s:
            out.add(canon(t))
    if net_id:
        nid = canon(net_id)
        for v in list(out):
            if len(v) > len(nid) and v.startswith(nid):
                out.add(v[len(nid):])
            if len(v) > len(nid) and v.endswith(nid):
                out.add(v[: -len(nid)])
    return {v for v in out if v}


def ext_of(name: str) -> str:
    suffix = PurePosixPath(name).suffix
    return suffix.lower()
