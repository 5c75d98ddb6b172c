"""A Brightspace "Download" of an assignment's submissions, as a zip or extracted folder.

Both layouts are read: a folder per attempt (``<label>/<file>``) and flat
(``<label> - <file>``), with ``index.html``, macOS and Windows junk and a lone wrapper
folder ignored. Every attempt is kept; per student the latest attempt before the late
cut-off is graded (the latest of all when every one is later: it is graded late). The net id
comes from the student's own ``<net_id>.zip`` name, else from the class list by display name;
a student neither resolves is reported and graded under a placeholder, never guessed.

``stage`` copies each graded attempt's zip (or a zip of its loose files) into a folder of
ours, under a name of ours, and writes a manifest of the original folder and file names, so
feedback can go back to Brightspace by them.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Callable
from zoneinfo import ZoneInfo

from grader.intake_names import netid_from_filename
from grader.lms.classlist import Roster, normalise
from grader.lms.names import Label, parse_label, split_flat

JUNK = re.compile(r"(^|/)(__MACOSX(/|$)|\._|\.DS_Store$|Thumbs\.db$|desktop\.ini$)", re.IGNORECASE)
_CHUNK = 1 << 16


class DownloadError(ValueError):
    pass


@dataclass
class File:
    path: str              # the entry of the download, exactly as stored
    name: str              # the student's own file name
    size: int


@dataclass
class Attempt:
    label: str
    prefix: str
    who: str
    submitted: datetime    # naive, course time zone
    files: list[File] = field(default_factory=list)


@dataclass
class Download:
    source: Path
    layout: str                             # "folders", "flat" or "mixed"
    attempts: list[Attempt]
    ignored: list[str]                      # index.html, junk, entries that are no attempt


@dataclass
class Student:
    key: str                                # the net id, or "unresolved-<name>" for staff to settle
    net_id: str | None
    display_name: str
    resolved_by: str                        # "zip name", "class list" or "" (unresolved)
    attempts: list[Attempt]
    chosen: Attempt
    notes: list[str] = field(default_factory=list)
    doubt: bool = False                     # who this is is not settled: staff look, exports leave it out


def _entries(source: Path) -> list[tuple[str, str, int]]:
    """(entry as stored, entry with '/' separators, declared size)."""
    if source.is_dir():
        return [(p.relative_to(source).as_posix(), p.relative_to(source).as_posix(), p.stat().st_size)
                for p in sorted(source.rglob("*")) if p.is_file() and not p.is_symlink()]
    try:
        with zipfile.ZipFile(source) as zf:
            return [(i.filename, i.filename.replace("\\", "/"), i.file_size) for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as e:
        raise DownloadError(f"{source}: not a readable zip ({e})") from e


def looks_like_download(source: Path) -> bool:
    """An LMS download rather than one student's zip: its entries are Brightspace labels."""
    try:
        names = [n for _, n, _ in _entries(source)]
    except DownloadError:
        return False
    kept = [n for n in names if not _ignorable(n)]
    wrapper = _wrapper(kept)
    labelled = [n for n in kept if _attempt_of(n, wrapper) is not None]
    return bool(labelled) and len(labelled) >= len(kept) / 2


def _ignorable(name: str) -> bool:
    return name.lower() == "index.html" or bool(JUNK.search(name))


def _attempt_of(name: str, wrapper: str) -> tuple[Label, str] | None:
    """(label, file path inside the attempt) of an entry, either layout."""
    rel = name[len(wrapper):] if wrapper and name.startswith(wrapper) else name
    head, _, rest = rel.partition("/")
    if rest and (label := parse_label(head)) is not None:
        return label, rest
    if not rest:
        return split_flat(head)
    return None


def _wrapper(names: list[str]) -> str:
    """A lone folder around everything (re-zipped by hand), when it is not itself a label."""
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    if len(tops) == 1 and all("/" in n for n in names):
        top = tops.pop()
        if parse_label(top) is None:
            return top + "/"
    return ""


def read_download(source: Path) -> Download:
    source = Path(source)
    entries = _entries(source)
    kept = [(raw, n, s) for raw, n, s in entries if not _ignorable(n)]
    ignored = [n for _, n, _ in entries if _ignorable(n)]
    wrapper = _wrapper([n for _, n, _ in kept])
    attempts: dict[str, Attempt] = {}
    layouts = set()
    for raw, name, size in kept:
        got = _attempt_of(name, wrapper)
        if got is None:
            ignored.append(name)
            continue
        label, inner = got
        layouts.add("folders" if "/" in name[len(wrapper):] else "flat")
        a = attempts.setdefault(label.text, Attempt(label.text, label.prefix, label.who, label.submitted))
        a.files.append(File(raw, PurePosixPath(inner).name, size))
    if not attempts:
        raise DownloadError(f"{source}: no Brightspace submission in it (entries are named "
                            "'<n>-<n> - <Name> - <Mon D, YYYY H:MM AM>' as folders or file prefixes)")
    layout = layouts.pop() if len(layouts) == 1 else "mixed"
    return Download(source, layout, sorted(attempts.values(), key=lambda a: (a.who, a.submitted)), ignored)


def _own_net_id(attempt: Attempt, pattern: str) -> str | None:
    """The net id the attempt's own ``<net_id>.zip`` says (exactly that name: ``lab3.zip`` says none)."""
    ids = set()
    for f in attempt.files:
        net_id, exact = netid_from_filename(f.name, pattern)
        if exact:
            ids.add(net_id)
    return ids.pop() if len(ids) == 1 else None


def students(download: Download, roster: Roster | None, netid_pattern: str,
             cutoff: Callable[[str | None], datetime]) -> list[Student]:
    """Attempts grouped by student, each resolved and its graded attempt chosen.

    ``cutoff(net_id)``: the last minute (naive, course zone) an attempt is still accepted."""
    by_name: dict[str, list[Attempt]] = {}
    for a in download.attempts:
        by_name.setdefault(normalise(a.who), []).append(a)
    out = []
    for attempts in by_name.values():
        # Two people of one display name: their own zip names tell them apart.
        own = {id(a): _own_net_id(a, netid_pattern) for a in attempts}
        ids = sorted({v for v in own.values() if v})
        groups = [[a for a in attempts if own[id(a)] in (i, None)] for i in ids] if len(ids) > 1 else [attempts]
        for group in groups:
            out.append(_student(group, own, roster, cutoff, split=len(ids) > 1))
    return sorted(out, key=lambda s: s.key)


def _student(attempts: list[Attempt], own: dict[int, str | None], roster: Roster | None,
             cutoff: Callable[[str | None], datetime], split: bool) -> Student:
    attempts = sorted(attempts, key=lambda a: a.submitted)
    who = attempts[-1].who
    notes = []
    doubt = split
    if split:
        notes.append(f"another student is also named {who!r} in the download; the attempts were told "
                     "apart by their zip names (attempts without one were given to both): check them")
    ids = [own[id(a)] for a in reversed(attempts) if own[id(a)]]
    net_id, by = (ids[0], "zip name") if ids else (None, "")
    if roster is not None:
        matches = roster.by_name(who)
        if net_id is not None:
            if roster.by_username(net_id) is None:
                doubt = True
                notes.append(f"the zip says {net_id!r}, who is not on the class list")
            elif matches and net_id not in {m.username for m in matches}:
                doubt = True
                notes.append(f"the zip says {net_id!r}, but the class list has {who!r} as "
                             f"{', '.join(sorted(m.username for m in matches))}")
        elif len(matches) == 1:
            net_id, by = matches[0].username, "class list"
        elif matches:
            notes.append(f"{who!r} is {len(matches)} students on the class list "
                         f"({', '.join(sorted(m.username for m in matches))}): not graded under any of them")
        else:
            notes.append(f"{who!r} is not on the class list")
    elif net_id is None:
        notes.append("no '<net_id>.zip' in the submission and no class list (--classlist) to find the student by name")
    limit = cutoff(net_id)
    in_time = [a for a in attempts if a.submitted <= limit]
    chosen = in_time[-1] if in_time else attempts[-1]
    if len(attempts) > 1:
        if not in_time:
            notes.append("every attempt came after the late cut-off; the latest is graded")
        elif chosen is not attempts[-1]:
            later = ", ".join(a.submitted.strftime("%b %d %H:%M") for a in attempts if a.submitted > limit)
            notes.append(f"attempts after the late cut-off ({later}) were not graded")
    same = [a for a in attempts if a is not chosen and a.submitted == chosen.submitted]
    if same:
        notes.append("two attempts carry the same minute; the grader cannot tell which came last: check them")
    if ids and own[id(chosen)] is None:
        notes.append("the graded attempt has no '<net_id>.zip' although an earlier one has: check them")
    if net_id is None:
        slug = re.sub(r"[^a-z0-9]+", "-", normalise(who)).strip("-")[:40] or "student"
        key = f"unresolved-{slug}-{hashlib.sha256(who.encode()).hexdigest()[:6]}"   # 李明 and 王芳 differ
    else:
        key = net_id
    return Student(key, net_id, who, by, attempts, chosen, notes, doubt or net_id is None)


def cutoff_for(due: datetime, late_window_hours: float,
               extensions: dict[str, timedelta]) -> Callable[[str | None], datetime]:
    """Brightspace's minutes are in the course zone, as ``due`` is; an attempt stamped in the
    last minute is in time (its seconds are unknown)."""
    base = due.replace(tzinfo=None) + timedelta(hours=late_window_hours)
    return lambda net_id: base + extensions.get(net_id or "", timedelta(0))


def submitted_at(attempt: Attempt, zone: str) -> datetime:
    return attempt.submitted.replace(tzinfo=ZoneInfo(zone))


# ----------------------------------------------------------------- staging

@dataclass
class Staged:
    zip_path: Path
    net_id: str                    # or the unresolved placeholder
    given_name: str                # what the student named the file (naming is judged on it)
    submitted: datetime            # aware
    entry: dict                    # the manifest's entry for this student


def _copy_member(source: Path, path: str, dest: Path, limit: int) -> None:
    """Copy one entry, stopping at ``limit`` bytes (declared sizes in a zip can lie)."""
    def pump(src, dst):
        n = 0
        while block := src.read(_CHUNK):
            n += len(block)
            if n > limit:
                raise DownloadError(f"{path}: larger than {limit // 2**20} MB")
            dst.write(block)
    with open(dest, "wb") as dst:
        if source.is_dir():
            with open(source / path, "rb") as src:
                pump(src, dst)
        else:
            with zipfile.ZipFile(source) as zf, zf.open(path) as src:
                pump(src, dst)


def _safe(text: str, n: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:n] or "x"


def stage(download: Download, people: list[Student], dest: Path, zone: str, max_bytes: int) -> list[Staged]:
    """One zip per student under ``dest`` (named ``<key>.zip``) and ``dest/manifest.json``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    staged, manifest = [], []
    used: dict[str, int] = {}
    for s in people:
        a = s.chosen
        notes = list(s.notes)
        doubt = s.doubt
        zips = [f for f in a.files if f.name.lower().endswith(".zip")]
        stem = _safe(s.key, 80)
        used[stem] = used.get(stem, 0) + 1
        if used[stem] > 1:       # two students of one key (a changed display name, one zip name): both kept
            notes.append(f"another student of the download also resolves to {s.key!r}: both are graded; staff decide")
            doubt = True
            stem = f"{stem}+{used[stem]}"
        target = dest / f"{stem}.zip"
        entry = {"key": s.key, "net_id": s.net_id, "display_name": s.display_name, "resolved_by": s.resolved_by,
                 "graded_attempt": a.label, "notes": notes, "staged": target.name, "identity_doubt": doubt,
                 "attempts": [{"label": x.label, "submitted": x.submitted.isoformat(timespec="minutes"),
                               "files": [asdict(f) for f in x.files]} for x in s.attempts]}
        try:
            if len(zips) == 1:
                given = zips[0].name
                _copy_member(download.source, zips[0].path, target, max_bytes)
                others = [f.name for f in a.files if f is not zips[0]]
                if others:
                    notes.append(f"also uploaded beside the zip, not graded: {', '.join(others)}")
            else:
                # Loose files (or several zips): one zip of all of them, judged as misnamed.
                given = "(files uploaded one by one)" if not zips else "(several zips)"
                _zip_files(download, a.files, target, max_bytes)
        except (DownloadError, zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError, OSError) as e:
            notes.append(f"could not be taken from the download: {e}")
            given = "(unreadable)"
            target.write_bytes(b"")
        entry["given_name"] = given
        manifest.append(entry)
        staged.append(Staged(target, s.key, given, submitted_at(a, zone), entry))
    (dest / "manifest.json").write_text(json.dumps({"source": str(download.source), "layout": download.layout,
                                                    "ignored": download.ignored, "students": manifest}, indent=1))
    return staged


def _zip_files(download: Download, files: list[File], target: Path, max_bytes: int) -> None:
    tmp = target.with_suffix(".parts")
    tmp.mkdir()
    try:
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
            total = 0
            for n, f in enumerate(files):
                part = tmp / str(n)
                _copy_member(download.source, f.path, part, max_bytes - total)
                total += part.stat().st_size
                # A fixed date: the same attempt always gives the same bytes (a rerun keeps its record).
                info = zipfile.ZipInfo(f.name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(part, "rb") as src, zf.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------- one call for the batch

@dataclass
class Prepared:
    zips: list[Path]
    lms: dict[str, dict]             # staged zip name -> manifest entry (GradeSettings.lms)
    times: dict[str, datetime]       # net id (or placeholder) -> the graded attempt's time
    lines: list[str]                 # what staff should read


def prepare(source: Path, dest: Path, rubric, extensions: dict[str, timedelta],
            roster: Roster | None) -> Prepared:
    """Read the download, resolve and choose per student, stage the graded attempts."""
    download = read_download(source)
    d = rubric.deadline
    people = students(download, roster, rubric.intake.netid_pattern,
                      cutoff_for(d.due, d.late_window_hours, extensions))
    staged = stage(download, people, dest, d.timezone, int(rubric.intake.max_total_mb * 2**20))
    by = {"zip name": 0, "class list": 0, "": 0}
    for s in people:
        by[s.resolved_by] += 1
    lines = [f"Brightspace download ({download.layout} layout): {len(download.attempts)} attempt(s) of "
             f"{len(people)} student(s); net id from the zip name {by['zip name']}, from the class list "
             f"{by['class list']}, unresolved {by['']}; times read as {d.timezone}; manifest {dest / 'manifest.json'}"]
    others = [n for n in download.ignored if n.lower() != "index.html" and not JUNK.search(n)]
    if others:
        lines.append(f"{len(others)} entr{'y' if len(others) == 1 else 'ies'} of the download "
                     f"{'is' if len(others) == 1 else 'are'} not a Brightspace submission and not graded: "
                     + ", ".join(repr(n) for n in others[:10]) + (" ..." if len(others) > 10 else ""))
    for st in staged:
        for note in st.entry["notes"]:
            lines.append(f"{st.net_id} ({st.entry['display_name']}): {note}")
    return Prepared([s.zip_path for s in staged], {s.zip_path.name: s.entry for s in staged},
                    {s.net_id: s.submitted for s in staged}, lines)
