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
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from grader.file_checks import CHECKS, sniff
from grader.text_safety import first_line
from grader.intake_names import (ASSIGNMENT_TOKEN, canon, ext_of, netid_from_filename, split_ext,
                                 stem_variants)
from grader.lms.names import original_name
from grader.zip_members import Member, decode_name, normalize, shown_name, unsafe_reason

__all__ = ["IntakePolicy", "IntakeResult", "intake", "netid_from_filename"]

_MIB = 2**20
# Compression ratio is only meaningful for members big enough to hurt.
_RATIO_MIN_BYTES = 1 * _MIB
_CHUNK = 64 * 1024

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
            kind = sniff(f.read(1024))
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
                f"The zip looks like a zip bomb: {shown_name(i.orig_filename)} expands {i.file_size / max(i.compress_size, 1):.0f} times; "
                "submit the required files only."
            )


def _copy_member(
    zf: zipfile.ZipFile, m: Member, target: Path, policy: IntakePolicy, budget: int
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
                problem = f"the zip uses a compression method that cannot be read ({first_line(e)}); use a standard zip tool"
            except Exception as e:  # noqa: BLE001
                problem = f"the file is damaged in the zip and cannot be extracted ({first_line(e)})"
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
        plausible = re.fullmatch(policy.netid_pattern, net_id) and not ASSIGNMENT_TOKEN.fullmatch(net_id)
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
    members: list[Member] = []
    seen: dict[str, str] = {}
    for info in zf.infolist():
        name, utf8 = decode_name(info)
        if not utf8:
            res.warnings.append(f"the name {shown_name(name)} in the zip is not valid UTF-8; it was read as cp437")
        if info.is_dir() or name.endswith(("/", "\\")):
            continue
        why = unsafe_reason(info, name)
        if why:
            res.warnings.append(f"skipped {shown_name(name)}: it {why}")
            res.extra_files.append(name)
            continue
        path = normalize(name)
        if not path:
            continue
        if any(fnmatch.fnmatchcase(path, pat) for pat in policy.ignore):
            res.ignored.append(path)
            continue
        key = path.casefold()
        if key in seen:
            res.warnings.append(
                f"skipped {shown_name(name)}: the zip already has {shown_name(seen[key])} (same name apart from case, or a duplicate entry)"
            )
            continue
        seen[key] = name
        members.append(Member(info=info, name=name, path=path))

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
            res.warnings.append(f"'{req}' ({shown_name(m.name)}) was not extracted: {problem}")
            continue
        if target.resolve().parent != dest.resolve():  # defensive: must never happen
            raise RuntimeError(f"intake wrote outside dest: {target}")
        res.files[req] = target
        check = CHECKS.get(ext_of(req))
        if check:
            found = check(target, req)
            res.warnings += found.warnings
            if found.problem:
                res.problems[req] = found.problem
            if found.document is not None:
                res.documents[req] = found.document

    res.missing = [n for n in policy.required if n not in res.files and n not in res.problems]
    if not res.gradable:
        res.status = "rejected"
        res.reason = _nothing_reason(policy, res, members)


def _strip_wrapper(members: list[Member], res: IntakeResult) -> None:
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


def _match(members: list[Member], policy: IntakePolicy, res: IntakeResult) -> dict[str, Member]:
    chosen: dict[str, Member] = {}
    for m in members:
        if m.path in policy.required:
            chosen[m.path] = m
    taken = {id(m) for m in chosen.values()}
    near: dict[str, list[Member]] = {r: [] for r in policy.required}
    wrong_ext: dict[str, list[Member]] = {r: [] for r in policy.required}
    for m in members:
        if id(m) in taken:
            continue
        base = m.path.rsplit("/", 1)[-1]
        for req in policy.required:
            req_ext = ext_of(req)
            req_stem = canon(req[: -len(req_ext)] if req_ext else req)
            stem, ext = split_ext(base, req_ext)
            if req_stem in stem_variants(stem, res.net_id):
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
            res.naming_issues.append(f"{shown_name(m.path)} should be {where}named '{req}'")
        elif len(cands) > 1:
            names = ", ".join(shown_name(c.path) for c in cands)
            res.warnings.append(
                f"several files could be '{req}' ({names}); none was graded: name exactly one file '{req}'"
            )
        else:
            kind = {".ipynb": "the notebook", ".pdf": "the PDF"}.get(ext_of(req), "the file")
            for m in wrong_ext[req]:
                res.warnings.append(f"found {shown_name(m.path)}; {kind} '{req}' is required")

    res.extra_files.extend(m.name for m in members if id(m) not in taken)
    return chosen


def _nothing_reason(policy: IntakePolicy, res: IntakeResult, members: list[Member]) -> str:
    if res.problems:
        name, problem = next(iter(res.problems.items()))
        return f"None of the required files can be graded: '{name}': {problem}."
    if not members:
        return f"The zip holds no files to grade; it must contain {', '.join(policy.required)}."
    shown = ", ".join(shown_name(m.path) for m in members[:6]) + (", ..." if len(members) > 6 else "")
    hint = ""
    if any(m.path.lower().endswith(".zip") for m in members):
        hint = " (a zip inside the zip is not opened: zip the files themselves)"
    return (
        f"None of the required files ({', '.join(policy.required)}) was found in the zip; "
        f"it contains {shown}{hint}."
    )
