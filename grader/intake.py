"""Intake: open a student's ``<net_id>.zip`` safely and find the required files.

Decisions (the 10% naming penalty is ``IntakeResult.naming_penalty``):

* Only the matched required files are extracted, each flat into ``dest`` under its
  required name. Extra files are listed but never written, so a large or hostile extra
  member costs nothing and no member path is ever used as a host path.
* Unsafe members (absolute paths, drive letters, ``..`` components, NUL bytes,
  symlinks, devices, fifos) are skipped with a warning and count as extra files:
  they are in the zip and are not required, so they carry the naming penalty.
* A Brightspace bulk-download prefix (``<A>-<B> - <Name> - <Mon D, YYYY HMM PM> - ``)
  is added by the LMS, not the student: the name is judged on the original file
  name after that prefix.
* Near-matches (graded, with the naming penalty): case and separator differences
  (``Lab-One.ipynb`` for ``lab_one.ipynb``), browser/OS duplicate suffixes
  ``name (1)``, ``name(2)``, ``name-1``, ``name - Copy``, Colab's ``Copy of name``, a
  repeated extension ``name.ipynb.ipynb``, the student's net id added before or after the
  name, a file in a subfolder, and a single wrapping folder around everything. The
  extension must be right: ``lab_one.py`` is not the notebook.
* Two near-matches for one required file and no exact one: nothing is guessed, the
  file is missing and a warning lists the candidates.
* Duplicate member names (also differing only in case): the first is kept and the
  rest are skipped with a warning; they are archive artefacts, not extra files.
* ``status`` is "rejected" when nothing can be graded: not a zip, corrupt, over the
  limits, a zip bomb, or no required file was extracted with usable content (missing,
  encrypted, damaged, not a notebook/PDF). A rejected result may still list ``files``.
* Files whose content is unusable (``problems``) stay in ``files`` so staff can look at
  them; ``IntakeResult.gradable`` leaves them out.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import stat
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

from grader.lms.names import original_name

__all__ = ["IntakePolicy", "IntakeResult", "intake", "netid_from_filename"]

_MIB = 2**20
# Compression ratio is only meaningful for members big enough to hurt.
_RATIO_MIN_BYTES = 1 * _MIB
_CHUNK = 64 * 1024
_MAX_SHOWN = 80  # longest member name quoted in a message

_DEFAULT_IGNORE = (
    "__MACOSX/*",
    "*/.DS_Store",
    ".DS_Store",
    "Thumbs.db",
    "desktop.ini",
    "*/.ipynb_checkpoints/*",
    ".ipynb_checkpoints/*",
    "._*",
    "*/._*",
)


@dataclass(frozen=True)
class IntakePolicy:
    required: tuple[str, ...]
    ignore: tuple[str, ...] = _DEFAULT_IGNORE
    max_members: int = 500
    max_total_bytes: int = 300 * _MIB
    max_member_bytes: int = 200 * _MIB
    max_ratio: float = 200.0
    netid_pattern: str = r"[a-z]{2,4}[0-9]{1,6}"
    netid_hint: str = "your student login, e.g. 'abc123.zip'"   # what the zip should be called, in words

    def __post_init__(self) -> None:
        if not self.required:
            raise ValueError("IntakePolicy.required is empty")
        for name in self.required:
            if not name or name != PurePosixPath(name).name or "\\" in name or name in {".", ".."}:
                raise ValueError(f"required file name must be a plain file name: {name!r}")
        if len({n.lower() for n in self.required}) != len(self.required):
            raise ValueError("required file names must differ in more than case")
        re.compile(self.netid_pattern)


@dataclass
class IntakeResult:
    zip_name: str
    net_id: str
    status: str = "ok"
    reason: str = ""
    files: dict[str, Path] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    naming_issues: list[str] = field(default_factory=list)
    extra_files: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    documents: dict[str, dict] = field(default_factory=dict)   # PDF name -> pages, characters of text
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def naming_penalty(self) -> bool:
        return bool(self.naming_issues or self.extra_files)

    @property
    def gradable(self) -> dict[str, Path]:
        """Extracted required files whose content passed the checks."""
        return {k: v for k, v in self.files.items() if k not in self.problems}


# --------------------------------------------------------------------------- zip name

_ASSIGNMENT_TOKEN = re.compile(r"(?:hw|lab|ps|homework)\d{1,2}")


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
    if orig.endswith(".zip") and rx.fullmatch(orig[:-4]) and not _ASSIGNMENT_TOKEN.fullmatch(orig[:-4]):
        return orig[:-4], True
    stem = orig[:-4] if orig.lower().endswith(".zip") else orig
    tokens = [t for t in re.split(r"[^a-z0-9]+", stem.lower()) if t]
    hits = [t for t in tokens if rx.fullmatch(t)]
    if not hits:
        hits = [m.group(0) for t in tokens if (m := rx.search(t))]
    if hits:
        preferred = [t for t in hits if not _ASSIGNMENT_TOKEN.fullmatch(t)]
        return (preferred or hits)[0], False
    return _sanitize(stem), False


# --------------------------------------------------------------------------- members


@dataclass
class _Member:
    info: zipfile.ZipInfo
    name: str  # decoded, backslashes turned into '/'
    path: str  # normalized relative path (wrapper folder removed later)


def _show(name: str) -> str:
    s = name if len(name) <= _MAX_SHOWN else name[: _MAX_SHOWN - 3] + "..."
    return repr(s)


def _decode_name(info: zipfile.ZipInfo) -> tuple[str, bool]:
    """(name, was_valid_utf8). Unflagged names that are valid UTF-8 are read as UTF-8."""
    name = info.orig_filename
    if info.flag_bits & 0x800:
        return name, True
    try:
        raw = name.encode("cp437")
    except UnicodeEncodeError:  # set by a caller-supplied metadata_encoding
        return name, True
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return name, False


def _unsafe_reason(info: zipfile.ZipInfo, name: str) -> str | None:
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        return "is a symbolic link"
    if kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
        return "is a device or pipe, not a file"
    if "\x00" in name:
        return "has a NUL byte in its name"
    if name.startswith(("/", "\\")):
        return "has an absolute path"
    if re.match(r"^[A-Za-z]:", name):
        return "has a drive letter"
    if any(part == ".." for part in re.split(r"[/\\]", name)):
        return "has a '..' path component"
    return None


def _normalize(name: str) -> str:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)


# --------------------------------------------------------------------------- matching

_DUP_SUFFIXES = (
    re.compile(r"\s*\(\d{1,3}\)$"),  # "name (1)", "name(2)"
    re.compile(r"-\d{1,2}$"),  # "name-1"
    re.compile(r"\s*-\s*copy(?:\s*\(\d{1,3}\))?$", re.IGNORECASE),  # Windows "name - Copy (2)"
)


def _canon(stem: str) -> str:
    return re.sub(r"[\s._-]+", "", stem.lower())


def _split_ext(base: str, ext: str) -> tuple[str, str]:
    """(stem, ext) with a repeated required extension collapsed: a.ipynb.ipynb -> a."""
    low = base.lower()
    if ext and low.endswith(ext):
        stem = base[: -len(ext)]
        while ext and stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
        return stem, ext
    stem, dot, tail = base.rpartition(".")
    return (stem, "." + tail.lower()) if dot and stem else (base, "")


def _stem_variants(stem: str, net_id: str) -> set[str]:
    s = stem.strip()
    while s.lower().startswith("copy of "):
        s = s[8:].lstrip()
    out = {_canon(s)}
    for rx in _DUP_SUFFIXES:
        t = rx.sub("", s)
        if t != s:
            out.add(_canon(t))
    if net_id:
        nid = _canon(net_id)
        for v in list(out):
            if len(v) > len(nid) and v.startswith(nid):
                out.add(v[len(nid):])
            if len(v) > len(nid) and v.endswith(nid):
                out.add(v[: -len(nid)])
    return {v for v in out if v}


def _ext_of(name: str) -> str:
    suffix = PurePosixPath(name).suffix
    return suffix.lower()


# --------------------------------------------------------------------------- content


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    # pypdf and nbformat log at WARNING/ERROR for every malformed input; results carry it.
    logger = logging.getLogger(logger_name)
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(old)


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg if len(msg) <= 160 else msg[:157] + "..."


def _check_notebook(path: Path, name: str, res: IntakeResult) -> None:
    import nbformat  # deferred: heavy import

    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        res.problems[name] = "not a valid notebook: the file is not UTF-8 text"
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        res.problems[name] = f"not a valid notebook: invalid JSON at line {e.lineno}, column {e.colno}"
        return
    except RecursionError:  # json raises this, not JSONDecodeError, for deeply nested arrays
        res.problems[name] = "not a valid notebook: the JSON is nested too deeply"
        return
    if not isinstance(data, dict) or not isinstance(data.get("nbformat"), int):
        res.problems[name] = "not a valid notebook: no 'nbformat' version field"
        return
    major = data["nbformat"]
    if major > 4:
        res.problems[name] = f"not a valid notebook: unsupported nbformat version {major}"
        return
    try:
        with _quiet("traitlets"), _quiet("nbformat"):
            nb = nbformat.reads(text, as_version=4)
    # nbformat raises ValidationError, NBFormatError, KeyError, AttributeError, TypeError...
    # depending on which part of a damaged notebook it trips over.
    except Exception as e:  # noqa: BLE001
        res.problems[name] = f"not a valid notebook: {_short(e)}"
        return
    if not isinstance(nb.get("cells"), list):
        res.problems[name] = "not a valid notebook: it has no list of cells"
        return
    if major < 4:
        nbformat.write(nb, str(path))
        res.warnings.append(
            f"'{name}' is an old nbformat {major} notebook; it was converted to nbformat 4 for grading"
        )
    try:
        nbformat.validate(nb)
    except Exception as e:  # noqa: BLE001 - schema problems only lower confidence
        res.warnings.append(f"'{name}' does not fully follow the notebook format: {_short(e)}")
    if not nb.cells:
        res.warnings.append(f"'{name}' has no cells")


def _sniff(head: bytes) -> str:
    h = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    low = h[:512].lower()
    if low.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in low:
        return "HTML"
    if h.startswith(b"PK\x03\x04"):
        return "a zip or Word/Office document"
    if h.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8")):
        return "an image"
    if h.startswith(b"{") and b'"cells"' in head:
        return "a notebook"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # not just a character cut at the end of the sample
            return "binary data"
    return "text" if b"\x00" not in head else "binary data"


def _check_pdf(path: Path, name: str, res: IntakeResult) -> None:
    import pypdf  # deferred: heavy import

    with path.open("rb") as f:
        head = f.read(1024)
    if not head.startswith(b"%PDF-"):
        if b"%PDF-" in head:
            res.warnings.append(f"'{name}' has bytes before its PDF header")
        else:
            res.problems[name] = f"not a real PDF (looks like {_sniff(head)})"
            return
    try:
        with _quiet("pypdf"):
            reader = pypdf.PdfReader(str(path))
            if reader.is_encrypted and not reader.decrypt(""):
                res.problems[name] = "the PDF is password-protected"
                return
            pages = len(reader.pages)
            chars = _text_chars(reader)
    # pypdf's errors on damaged files range over PdfReadError, ValueError, KeyError, ...
    except Exception as e:  # noqa: BLE001
        res.problems[name] = f"not a real PDF (it cannot be opened: {_short(e)})"
        return
    if pages < 1:
        res.problems[name] = "not a real PDF (it has no pages)"
        return
    res.documents[name] = {"pages": pages, "text_chars": chars}
    if chars == 0:
        res.warnings.append(f"'{name}' has no text a program can read (a scan or photos?): staff can still "
                            "read it; typed or exported PDFs are easier to grade")


def _text_chars(reader, pages: int = 5) -> int:
    """Characters of extractable text in the first ``pages`` pages (a scan has none)."""
    n = 0
    for page in reader.pages[:pages]:
        try:
            n += len((page.extract_text() or "").strip())
        except Exception:  # noqa: BLE001 - a page pypdf cannot read counts as no text
            continue
    return n


_CHECKS = {".ipynb": _check_notebook, ".pdf": _check_pdf}


# --------------------------------------------------------------------------- intake


class _Reject(Exception):
    """Internal: stop intake with a student-facing reason."""


def _declared_entries(zip_path: Path) -> int | None:
    """Entry count from the end-of-central-directory record, read before zipfile parses
    (and holds in memory) a central directory of any length. None if not found."""
    with zip_path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - (22 + 0xFFFF)))
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return None
    count = int.from_bytes(tail[at + 10 : at + 12], "little")
    return None if count == 0xFFFF else count  # 0xFFFF: zip64, counted after parsing


def _too_many(n: int, limit: int, required: tuple[str, ...]) -> str:
    return f"The zip holds {n} entries, more than the limit of {limit}; submit only the required files: {', '.join(required)}."


def _open_zip(zip_path: Path, max_members: int, required: tuple[str, ...]) -> zipfile.ZipFile:
    try:
        size = zip_path.stat().st_size
    except OSError as e:
        raise _Reject(f"The submission could not be read ({e.strerror or e}).") from None
    if not zip_path.is_file():
        raise _Reject("The submission is not a file.")
    if size == 0:
        raise _Reject("The submitted zip file is empty (0 bytes); upload the zip again.")
    try:
        entries = _declared_entries(zip_path)
    except OSError as e:
        raise _Reject(f"The submission could not be read ({e.strerror or e}).") from None
    if entries is not None and entries > max_members:
        raise _Reject(_too_many(entries, max_members, required))
    try:
        return zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        with zip_path.open("rb") as f:
            kind = _sniff(f.read(1024))
        if kind in ("binary data", "a zip or Word/Office document"):
            why = "it is damaged or incomplete (perhaps a cut-off upload) or another archive format"
        else:
            why = f"it looks like {kind}"
        raise _Reject(f"The submission is not a valid zip file: {why}. Create it again with a zip tool.") from None
    # zipfile raises many types for damaged central directories (UnicodeDecodeError for
    # a bad UTF-8 name, struct.error, ValueError, OverflowError, EOFError ...).
    except Exception as e:  # noqa: BLE001
        raise _Reject(
            f"The zip file is damaged and cannot be read ({type(e).__name__}); create it again with a zip tool."
        ) from None


def _prescan(infos: list[zipfile.ZipInfo], policy: IntakePolicy) -> None:
    if len(infos) > policy.max_members:
        raise _Reject(_too_many(len(infos), policy.max_members, policy.required))
    total = sum(i.file_size for i in infos)
    if total > policy.max_total_bytes:
        raise _Reject(
            f"The zip expands to {total / _MIB:.0f} MiB, more than the limit of "
            f"{policy.max_total_bytes / _MIB:.0f} MiB; leave data, checkpoints and outputs out."
        )
    for i in infos:
        if i.file_size >= _RATIO_MIN_BYTES and i.file_size / max(i.compress_size, 1) > policy.max_ratio:
            raise _Reject(
                f"The zip looks like a zip bomb: {_show(i.orig_filename)} expands {i.file_size / max(i.compress_size, 1):.0f} times; "
                "submit the required files only."
            )


def _copy_member(
    zf: zipfile.ZipFile, m: _Member, target: Path, policy: IntakePolicy, budget: int
) -> tuple[int, str | None]:
    """Stream one member to ``target``; (bytes written, problem or None)."""
    info = m.info
    if info.flag_bits & 0x1:
        return 0, "the file is password-protected (encrypted) in the zip; zip it without a password"
    if info.file_size > policy.max_member_bytes:
        return 0, f"the file is {info.file_size / _MIB:.0f} MiB, over the {policy.max_member_bytes / _MIB:.0f} MiB limit"
    limit = min(info.file_size, policy.max_member_bytes, budget)
    fd, tmp = tempfile.mkstemp(prefix=".intake-", dir=target.parent)
    written = 0
    problem: str | None = None
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with zf.open(info) as src:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > limit:
                            problem = "the file is larger than the zip says or over the size limit"
                            break
                        out.write(chunk)
            # Damaged members raise BadZipFile (bad CRC, header mismatch), zlib/lzma/bz2
            # errors, NotImplementedError (unknown compression), EOFError, RuntimeError.
            except NotImplementedError as e:
                problem = f"the zip uses a compression method that cannot be read ({_short(e)}); use a standard zip tool"
            except Exception as e:  # noqa: BLE001
                problem = f"the file is damaged in the zip and cannot be extracted ({_short(e)})"
        if problem is None:
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)  # replaces a link itself, never follows it
            tmp = ""
        return written, problem
    finally:
        if tmp:
            os.unlink(tmp)


def intake(zip_path: Path, dest: Path, policy: IntakePolicy,
           submitted_as: tuple[str, str] | None = None) -> IntakeResult:
    """Check a submission zip and extract its required files into ``dest``.

    ``submitted_as``: (net_id, the name the student gave the file) when staff resolved the
    student elsewhere (an LMS download and its class list); the file's own name is then ours.
    Never raises for bad input; see the module docstring for the rules.
    """
    zip_path = Path(zip_path)
    dest = Path(dest)
    if submitted_as is not None:
        net_id, given = submitted_as
        name_ok = given == f"{net_id}.zip"
    else:
        given = original_name(zip_path.name)
        net_id, name_ok = netid_from_filename(zip_path.name, policy.netid_pattern)
    res = IntakeResult(zip_name=zip_path.name, net_id=net_id)
    if not name_ok:
        shown = given
        plausible = re.fullmatch(policy.netid_pattern, net_id) and not _ASSIGNMENT_TOKEN.fullmatch(net_id)
        expected = f"'{net_id}.zip'" if plausible else f"'<net_id>.zip' ({policy.netid_hint})"
        res.naming_issues.append(f"the zip is named '{shown}', expected {expected}")

    dest.mkdir(parents=True, exist_ok=True)
    for name in policy.required:  # stale copies from an earlier run must not be graded
        stale = dest / name
        if stale.is_symlink() or stale.is_file():
            stale.unlink()

    try:
        zf = _open_zip(zip_path, policy.max_members, policy.required)
    except _Reject as r:
        return _rejected(res, policy, str(r))
    with zf:
        try:
            _prescan(zf.infolist(), policy)
            _run(zf, dest, policy, res)
        except _Reject as r:
            return _rejected(res, policy, str(r))
    return res


def _rejected(res: IntakeResult, policy: IntakePolicy, reason: str) -> IntakeResult:
    res.status = "rejected"
    res.reason = reason
    res.missing = [n for n in policy.required if n not in res.files and n not in res.problems]
    return res


def _run(zf: zipfile.ZipFile, dest: Path, policy: IntakePolicy, res: IntakeResult) -> None:
    members: list[_Member] = []
    seen: dict[str, str] = {}
    for info in zf.infolist():
        name, utf8 = _decode_name(info)
        if not utf8:
            res.warnings.append(f"the name {_show(name)} in the zip is not valid UTF-8; it was read as cp437")
        if info.is_dir() or name.endswith(("/", "\\")):
            continue
        why = _unsafe_reason(info, name)
        if why:
            res.warnings.append(f"skipped {_show(name)}: it {why}")
            res.extra_files.append(name)
            continue
        path = _normalize(name)
        if not path:
            continue
        if any(fnmatch.fnmatchcase(path, pat) for pat in policy.ignore):
            res.ignored.append(path)
            continue
        key = path.casefold()
        if key in seen:
            res.warnings.append(
                f"skipped {_show(name)}: the zip already has {_show(seen[key])} (same name apart from case, or a duplicate entry)"
            )
            continue
        seen[key] = name
        members.append(_Member(info=info, name=name, path=path))

    _strip_wrapper(members, res)
    chosen = _match(members, policy, res)

    budget = policy.max_total_bytes
    for req in policy.required:
        m = chosen.get(req)
        if m is None:
            continue
        target = dest / req
        written, problem = _copy_member(zf, m, target, policy, budget)
        budget -= written
        if problem:
            res.problems[req] = problem
            res.warnings.append(f"'{req}' ({_show(m.name)}) was not extracted: {problem}")
            continue
        if target.resolve().parent != dest.resolve():  # defensive: must never happen
            raise RuntimeError(f"intake wrote outside dest: {target}")
        res.files[req] = target
        check = _CHECKS.get(_ext_of(req))
        if check:
            check(target, req, res)

    res.missing = [n for n in policy.required if n not in res.files and n not in res.problems]
    if not res.gradable:
        res.status = "rejected"
        res.reason = _nothing_reason(policy, res, members)


def _strip_wrapper(members: list[_Member], res: IntakeResult) -> None:
    prefix: list[str] = []
    while members and all("/" in m.path for m in members):
        tops = {m.path.split("/", 1)[0] for m in members}
        if len(tops) != 1:
            break
        top = tops.pop()
        prefix.append(top)
        for m in members:
            m.path = m.path.split("/", 1)[1]
    if prefix:
        res.naming_issues.append(
            f"files are inside a folder '{'/'.join(prefix)}/'; zip the files themselves, not a folder"
        )


def _match(members: list[_Member], policy: IntakePolicy, res: IntakeResult) -> dict[str, _Member]:
    chosen: dict[str, _Member] = {}
    for m in members:
        if m.path in policy.required:
            chosen[m.path] = m
    taken = {id(m) for m in chosen.values()}
    near: dict[str, list[_Member]] = {r: [] for r in policy.required}
    wrong_ext: dict[str, list[_Member]] = {r: [] for r in policy.required}
    for m in members:
        if id(m) in taken:
            continue
        base = m.path.rsplit("/", 1)[-1]
        for req in policy.required:
            req_ext = _ext_of(req)
            req_stem = _canon(req[: -len(req_ext)] if req_ext else req)
            stem, ext = _split_ext(base, req_ext)
            if req_stem in _stem_variants(stem, res.net_id):
                (near if ext == req_ext else wrong_ext)[req].append(m)

    for req in policy.required:
        if req in chosen:
            continue
        cands = [m for m in near[req] if id(m) not in taken]
        if len(cands) == 1:
            m = cands[0]
            chosen[req] = m
            taken.add(id(m))
            where = "at the top level of the zip and " if "/" in m.path else ""
            res.naming_issues.append(f"{_show(m.path)} should be {where}named '{req}'")
        elif len(cands) > 1:
            names = ", ".join(_show(c.path) for c in cands)
            res.warnings.append(
                f"several files could be '{req}' ({names}); none was graded: name exactly one file '{req}'"
            )
        else:
            kind = {".ipynb": "the notebook", ".pdf": "the PDF"}.get(_ext_of(req), "the file")
            for m in wrong_ext[req]:
                res.warnings.append(f"found {_show(m.path)}; {kind} '{req}' is required")

    res.extra_files.extend(m.name for m in members if id(m) not in taken)
    return chosen


def _nothing_reason(policy: IntakePolicy, res: IntakeResult, members: list[_Member]) -> str:
    if res.problems:
        name, problem = next(iter(res.problems.items()))
        return f"None of the required files can be graded: '{name}': {problem}."
    if not members:
        return f"The zip holds no files to grade; it must contain {', '.join(policy.required)}."
    shown = ", ".join(_show(m.path) for m in members[:6]) + (", ..." if len(members) > 6 else "")
    hint = ""
    if any(m.path.lower().endswith(".zip") for m in members):
        hint = " (a zip inside the zip is not opened: zip the files themselves)"
    return (
        f"None of the required files ({', '.join(policy.required)}) was found in the zip; "
        f"it contains {shown}{hint}."
    )
