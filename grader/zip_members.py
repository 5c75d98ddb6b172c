"""A zip's members as intake sees them: names decoded as the tool that wrote them meant
(UTF-8 flag or the old DOS code page), and the members that are never extracted (absolute paths,
drive letters, ``..``, NUL bytes, links, devices)."""
from __future__ import annotations

import re
import stat
import zipfile
from dataclasses import dataclass

_MAX_SHOWN = 80  # longest member name quoted in a message


@dataclass
class Member:
    info: zipfile.ZipInfo
    name: str  # decoded, backslashes turned into '/'
    path: str  # normalized relative path (wrapper folder removed later)


def shown_name(name: str) -> str:
    s = name if len(name) <= _MAX_SHOWN else name[: _MAX_SHOWN - 3] + "..."
    return repr(s)


def decode_name(info: zipfile.ZipInfo) -> tuple[str, bool]:
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


def unsafe_reason(info: zipfile.ZipInfo, name: str) -> str | None:
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


def normalize(name: str) -> str:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)
