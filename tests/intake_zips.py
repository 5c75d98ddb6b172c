"""Builders for real submission zips, including byte-level damage, for the intake tests."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from functools import lru_cache
from pathlib import Path

import nbformat
import pypdf

REQUIRED = ("hw2_theory.pdf", "hw2_cnn.ipynb", "hw2_rnn.ipynb", "08-seq_classification.ipynb")

Entry = tuple[str | zipfile.ZipInfo, bytes]


@lru_cache(maxsize=None)
def pdf_bytes() -> bytes:
    """A one-page PDF with text on it, as a typed answer sheet has."""
    from grader.validate import placeholder_pdf
    return placeholder_pdf("Problem 1.1: the receptive field is 7 x 7.")


@lru_cache(maxsize=None)
def scanned_pdf_bytes(pages: int = 2) -> bytes:
    """Pages that are only images, as a phone scan is: no text a program can read."""
    w = pypdf.PdfWriter()
    for _ in range(pages):
        w.add_blank_page(width=200, height=200)
    buf = io.BytesIO()
    w.write(buf)
    return buf.getvalue()


@lru_cache(maxsize=None)
def notebook_bytes(source: str = "x = 1") -> bytes:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(source))
    return nbformat.writes(nb).encode()


def nbformat3_bytes() -> bytes:
    nb = {
        "nbformat": 3,
        "nbformat_minor": 0,
        "metadata": {"name": ""},
        "worksheets": [
            {
                "metadata": {},
                "cells": [
                    {
                        "cell_type": "code",
                        "input": "y = 2",
                        "language": "python",
                        "metadata": {},
                        "outputs": [],
                        "collapsed": False,
                        "prompt_number": 1,
                    }
                ],
            }
        ],
    }
    return json.dumps(nb).encode()


def good_entries(names: dict[str, str] | None = None) -> list[Entry]:
    """The four required files; ``names`` renames some of them (required -> stored name)."""
    names = names or {}
    content = {
        "hw2_theory.pdf": pdf_bytes(),
        "hw2_cnn.ipynb": notebook_bytes("cnn = 1"),
        "hw2_rnn.ipynb": notebook_bytes("rnn = 2"),
        "08-seq_classification.ipynb": notebook_bytes("seq = 3"),
    }
    return [(names.get(k, k), v) for k, v in content.items()]


def zip_bytes(entries: list[Entry], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def write_zip(path: Path, entries: list[Entry], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    path.write_bytes(zip_bytes(entries, compression))
    return path


# ---------------------------------------------------------------- raw header patching

_EOCD = b"PK\x05\x06"
_CDH = b"PK\x01\x02"
_LFH = b"PK\x03\x04"


def central_entries(raw: bytes) -> list[tuple[int, int, bytes]]:
    """(central header offset, local header offset, name bytes) for each member."""
    eocd = raw.rindex(_EOCD)
    count, _cd_size, cd_off = struct.unpack_from("<H I I", raw, eocd + 10)
    out = []
    pos = cd_off
    for _ in range(count):
        assert raw[pos : pos + 4] == _CDH
        nlen, elen, clen = struct.unpack_from("<HHH", raw, pos + 28)
        (lho,) = struct.unpack_from("<I", raw, pos + 42)
        out.append((pos, lho, raw[pos + 46 : pos + 46 + nlen]))
        pos += 46 + nlen + elen + clen
    return out


def patch_member(
    raw: bytes,
    name: bytes,
    *,
    or_flags: int = 0,
    file_size: int | None = None,
    new_name: bytes | None = None,
) -> bytes:
    """Patch one member in both its local and central header."""
    buf = bytearray(raw)
    for cd, lh, nm in central_entries(raw):
        if nm != name:
            continue
        assert buf[lh : lh + 4] == _LFH
        (f,) = struct.unpack_from("<H", buf, cd + 8)
        struct.pack_into("<H", buf, cd + 8, f | or_flags)
        (f,) = struct.unpack_from("<H", buf, lh + 6)
        struct.pack_into("<H", buf, lh + 6, f | or_flags)
        if file_size is not None:
            struct.pack_into("<I", buf, cd + 24, file_size)
            struct.pack_into("<I", buf, lh + 22, file_size)
        if new_name is not None:
            assert len(new_name) == len(name)
            buf[cd + 46 : cd + 46 + len(name)] = new_name
            buf[lh + 30 : lh + 30 + len(name)] = new_name
        return bytes(buf)
    raise KeyError(name)
