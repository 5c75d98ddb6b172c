"""Hostile and broken zips for the intake, built from a table at test time.

Each case builds ``abc123.zip`` (or another name) in a temporary folder for the HW2 policy
(four required files) and states what the intake must conclude: the status, words that
must appear in its reason/warnings/problems, and which required files are gradable.
Whatever the case, nothing may be written outside the destination folder, no link may be
created, and intake must not raise.
"""
from __future__ import annotations

import base64
import io
import json
import os
import stat
import struct
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from intake_zips import REQUIRED, good_entries, nbformat3_bytes, notebook_bytes, patch_member, zip_bytes

ALL = frozenset(REQUIRED)
CNN = "hw2_cnn.ipynb"


@dataclass(frozen=True)
class IntakeCase:
    name: str
    what: str
    build: Callable[[Path], Path]        # folder -> the zip to submit
    status: str                          # "ok" | "rejected"
    words: tuple[str, ...] = ()          # in reason + warnings + problems (case-insensitive)
    gradable: frozenset[str] = ALL       # required files that must be gradable
    naming_penalty: bool | None = None
    slow: bool = False
    max_seconds: float = 20.0


def _entries_without(*names: str) -> list:
    return [e for e in good_entries() if e[0] not in names]


def _zip(entries: list, name: str = "abc123.zip", compression: int = zipfile.ZIP_DEFLATED) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(zip_bytes(entries, compression))
        return path
    return build


def _raw(make: Callable[[], bytes], name: str = "abc123.zip") -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(make())
        return path
    return build


def _info(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    return info


def _tar_with_hardlink() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = notebook_bytes("cnn = 1")
        ti = tarfile.TarInfo(CNN)
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
        link = tarfile.TarInfo("hw2_rnn.ipynb")
        link.type = tarfile.LNKTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
    return buf.getvalue()


def _hardlinked_dest(folder: Path) -> Path:
    # A stale extraction folder whose required file is a hard link to a host file: the new
    # extraction must replace the link, never write through it.
    victim = folder / "host-file.txt"
    victim.write_text("host data")
    out = folder / "out"
    out.mkdir()
    os.link(victim, out / CNN)
    path = folder / "abc123.zip"
    path.write_bytes(zip_bytes(good_entries()))
    return path


def _encrypted_all() -> bytes:
    raw = zip_bytes(good_entries())
    for name in REQUIRED:
        raw = patch_member(raw, name.encode(), or_flags=0x1)
    return raw


def _nested_bomb() -> bytes:
    inner = zip_bytes([("zeros.bin", bytes(40 << 20))])
    return zip_bytes([("inner.zip", inner), ("hw2_theory.zip", inner)])


def _truncated() -> bytes:
    raw = zip_bytes(good_entries())
    return raw[: len(raw) * 2 // 3]


def _non_utf8_names() -> bytes:
    raw = zip_bytes(_entries_without(CNN) + [("hw2_cnX.ipynb", notebook_bytes("cnn = 1")), ("caf\u00e9-notes.txt", b"n")])
    raw = patch_member(raw, b"hw2_cnX.ipynb", new_name=b"hw2_cn\xff.ipynb")
    return raw


def _long_names() -> bytes:
    return zip_bytes(good_entries() + [("n" * 65000 + ".ipynb", b"{}"), ("deep/" * 2000 + CNN, b"{}")])


def _many_members() -> bytes:
    return zip_bytes(good_entries() + [(f"junk/{i}.txt", b"") for i in range(5000)], zipfile.ZIP_STORED)


def _count_lies() -> bytes:
    raw = bytearray(zip_bytes(good_entries() + [(f"j/{i}", b"") for i in range(900)], zipfile.ZIP_STORED))
    eocd = raw.rindex(b"PK\x05\x06")
    struct.pack_into("<HH", raw, eocd + 8, 2, 2)
    return bytes(raw)


def _huge_declared() -> bytes:
    return patch_member(zip_bytes(good_entries()), CNN.encode(), file_size=0xFFFFFFFE)


def _understated() -> bytes:
    big = _entries_without(CNN) + [(CNN, notebook_bytes("x = 1") + b" " * 2_000_000)]
    return patch_member(zip_bytes(big, zipfile.ZIP_STORED), CNN.encode(), file_size=200)


def _deep_json() -> bytes:
    nb = b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    return zip_bytes(_entries_without(CNN) + [(CNN, nb)])


def _big_notebook(folder: Path) -> Path:
    # About 200 MB of incompressible notebook (an embedded "image"), stored uncompressed:
    # under the 200 MiB member limit, so it is accepted and checked in full.
    chunk = base64.b64encode(os.urandom(3 << 20)).decode()
    reps = 200_000_000 // len(chunk) + 1
    nb = json.loads(notebook_bytes("cnn = 1"))
    nb["cells"][0]["outputs"] = [{"output_type": "display_data", "metadata": {},
                                  "data": {"image/png": "PLACEHOLDER", "text/plain": "img"}}]
    head, tail = json.dumps(nb).encode().split(b"PLACEHOLDER")
    path = folder / "abc123.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in _entries_without(CNN):
            zf.writestr(name, data)
        info = zipfile.ZipInfo(CNN)
        with zf.open(info, "w", force_zip64=True) as fh:
            fh.write(head)
            for _ in range(reps):
                fh.write(chunk.encode())
            fh.write(tail)
    return path


def _html_pdf() -> bytes:
    html = b"<!DOCTYPE html><html><head><title>hw2_theory.pdf</title></head><body>Sign in</body></html>"
    return zip_bytes(_entries_without("hw2_theory.pdf") + [("hw2_theory.pdf", html)])


def _prefixed_sfx() -> bytes:
    return b"MZ" + b"\0" * 4094 + zip_bytes(good_entries())


CASES: list[IntakeCase] = [
    IntakeCase("traversal", "../ members, also aimed at a required name",
               _zip(good_entries() + [("../evil.txt", b"x"), ("a/../../evil.txt", b"x"), ("../" + CNN, b"x"),
                                      ("..\\..\\win.txt", b"x")]),
               "ok", ("'..' path component",), naming_penalty=True),
    IntakeCase("absolute", "absolute member paths", _zip(good_entries() + [("/tmp/hostile-abs.txt", b"x"),
                                                                           ("/" + CNN, b"x")]),
               "ok", ("absolute path",), naming_penalty=True),
    IntakeCase("drive-letter", "Windows drive letters and UNC paths",
               _zip(good_entries() + [("C:\\Windows\\evil.txt", b"x"), ("c:" + CNN, b"x"), ("\\\\srv\\share\\x", b"x")]),
               "ok", ("drive letter", "absolute path"), naming_penalty=True),
    IntakeCase("symlink", "a symlink member named like a required file, pointing at /etc/passwd",
               _zip(_entries_without("hw2_theory.pdf") + [(_info("hw2_theory.pdf", stat.S_IFLNK | 0o777), b"/etc/passwd"),
                                                         (_info("up", stat.S_IFLNK | 0o777), b"../../..")]),
               "ok", ("symbolic link",), ALL - {"hw2_theory.pdf"}, naming_penalty=True),
    IntakeCase("device", "fifo and character-device members", _zip(good_entries() + [
        (_info("fifo", stat.S_IFIFO | 0o644), b""), (_info("null", stat.S_IFCHR | 0o666), b"")]),
               "ok", ("device or pipe",), naming_penalty=True),
    IntakeCase("hardlink-tar", "a tar with a hard-link member, renamed .zip", _raw(_tar_with_hardlink),
               "rejected", ("not a valid zip",), frozenset()),
    IntakeCase("hardlink-dest", "the extraction target is a hard link to a host file", _hardlinked_dest,
               "ok", ()),
    IntakeCase("bomb", "a tiny zip expanding to 64 MiB of zeros",
               _zip(_entries_without(CNN) + [(CNN, bytes(64 << 20))]), "rejected", ("zip bomb",), frozenset()),
    IntakeCase("nested-zip", "zips inside the zip (each a bomb), no required file", _raw(_nested_bomb),
               "rejected", ("zip inside the zip",), frozenset()),
    IntakeCase("many-members", "5000 members", _raw(_many_members), "rejected", ("5004 entries",), frozenset()),
    IntakeCase("count-lies", "the end record claims 2 members, the directory holds 904", _raw(_count_lies),
               "rejected", ("904 entries",), frozenset()),
    IntakeCase("huge-declared", "a member declaring 4 GiB", _raw(_huge_declared), "rejected", ("MiB",), frozenset()),
    IntakeCase("understated", "a member larger than its header says", _raw(_understated), "ok",
               ("was not extracted",), ALL - {CNN}),
    IntakeCase("case-duplicates", "HW2_CNN.ipynb and hw2_cnn.ipynb, then hw2_cnn.IPYNB",
               _zip(good_entries() + [("HW2_CNN.ipynb", b"{}"), ("hw2_cnn.IPYNB", b"{}")]), "ok", ("same name apart from case",)),
    IntakeCase("encrypted", "every member password-protected", _raw(_encrypted_all), "rejected",
               ("password",), frozenset()),
    IntakeCase("truncated", "the last third of the zip cut off", _raw(_truncated), "rejected", ("damaged",), frozenset()),
    IntakeCase("empty-file", "a 0-byte upload", _raw(lambda: b""), "rejected", ("empty",), frozenset()),
    IntakeCase("non-utf8-name", "a member name that is not UTF-8", _raw(_non_utf8_names), "ok",
               ("not valid utf-8",), ALL - {CNN}, naming_penalty=True),
    IntakeCase("long-names", "a 65000-character name and a 2000-level path", _raw(_long_names), "ok", (),
               naming_penalty=True),
    IntakeCase("not-json", "a notebook that is not JSON",
               _zip(_entries_without(CNN) + [(CNN, b"print('hello')\n")]), "ok", ("invalid json",), ALL - {CNN}),
    IntakeCase("deep-json", "a notebook of 100000 nested arrays", _raw(_deep_json), "ok", ("nested too deeply",), ALL - {CNN}),
    IntakeCase("nbformat3", "an nbformat 3 notebook", _zip(_entries_without(CNN) + [(CNN, nbformat3_bytes())]),
               "ok", ("converted",)),
    IntakeCase("nbformat5", "a notebook claiming nbformat 5", _zip(_entries_without(CNN) + [(CNN, json.dumps(
        {"nbformat": 5, "nbformat_minor": 0, "metadata": {}, "cells": []}).encode())]), "ok",
               ("unsupported nbformat",), ALL - {CNN}),
    IntakeCase("html-pdf", "a 'PDF' that is a saved HTML page", _raw(_html_pdf), "ok", ("looks like HTML",),
               ALL - {"hw2_theory.pdf"}),
    IntakeCase("sfx-prefix", "4 KiB of executable stub before the zip", _raw(_prefixed_sfx), "ok", ()),
    IntakeCase("big-notebook", "a 200 MB notebook (incompressible, stored)", _big_notebook, "ok", (),
               slow=True, max_seconds=60),
]
