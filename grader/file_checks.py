"""What intake checks of a required file's content: a notebook is a readable notebook (old
formats converted), a PDF a real, openable PDF with pages (and text a program can read). Each
check returns its findings; intake files them under the required name."""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


@dataclass
class Findings:
    problem: str | None = None          # the file cannot be graded, in words for the student
    warnings: list[str] = field(default_factory=list)
    document: dict | None = None        # what staff see of a PDF (pages, extractable characters)


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


def short_error(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg if len(msg) <= 160 else msg[:157] + "..."


def check_notebook(path: Path, name: str) -> Findings:
    res = Findings()
    import nbformat  # deferred: heavy import

    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        res.problem = "not a valid notebook: the file is not UTF-8 text"
        return res
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        res.problem = f"not a valid notebook: invalid JSON at line {e.lineno}, column {e.colno}"
        return res
    except RecursionError:  # json raises this, not JSONDecodeError, for deeply nested arrays
        res.problem = "not a valid notebook: the JSON is nested too deeply"
        return res
    if not isinstance(data, dict) or not isinstance(data.get("nbformat"), int):
        res.problem = "not a valid notebook: no 'nbformat' version field"
        return res
    major = data["nbformat"]
    if major > 4:
        res.problem = f"not a valid notebook: unsupported nbformat version {major}"
        return res
    try:
        with _quiet("traitlets"), _quiet("nbformat"):
            nb = nbformat.reads(text, as_version=4)
    # nbformat raises ValidationError, NBFormatError, KeyError, AttributeError, TypeError...
    # depending on which part of a damaged notebook it trips over.
    except Exception as e:  # noqa: BLE001
        res.problem = f"not a valid notebook: {short_error(e)}"
        return res
    if not isinstance(nb.get("cells"), list):
        res.problem = "not a valid notebook: it has no list of cells"
        return res
    if major < 4:
        nbformat.write(nb, str(path))
        res.warnings.append(
            f"'{name}' is an old nbformat {major} notebook; it was converted to nbformat 4 for grading"
        )
    try:
        nbformat.validate(nb)
    except Exception as e:  # noqa: BLE001 - schema problems only lower confidence
        res.warnings.append(f"'{name}' does not fully follow the notebook format: {short_error(e)}")
    if not nb.cells:
        res.warnings.append(f"'{name}' has no cells")
    return res


def sniff(head: bytes) -> str:
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


def check_pdf(path: Path, name: str) -> Findings:
    res = Findings()
    import pypdf  # deferred: heavy import

    with path.open("rb") as f:
        head = f.read(1024)
    if not head.startswith(b"%PDF-"):
        if b"%PDF-" in head:
            res.warnings.append(f"'{name}' has bytes before its PDF header")
        else:
            res.problem = f"not a real PDF (looks like {sniff(head)})"
            return res
    try:
        with _quiet("pypdf"):
            reader = pypdf.PdfReader(str(path))
            if reader.is_encrypted and not reader.decrypt(""):
                res.problem = "the PDF is password-protected"
                return res
            pages = len(reader.pages)
            chars = _text_chars(reader)
    # pypdf's errors on damaged files range over PdfReadError, ValueError, KeyError, ...
    except Exception as e:  # noqa: BLE001
        res.problem = f"not a real PDF (it cannot be opened: {short_error(e)})"
        return res
    if pages < 1:
        res.problem = "not a real PDF (it has no pages)"
        return res
    res.document = {"pages": pages, "text_chars": chars}
    if chars == 0:
        res.warnings.append(f"'{name}' has no text a program can read (a scan or photos?): staff can still "
                            "read it; typed or exported PDFs are easier to grade")
    return res


def _text_chars(reader, pages: int = 5) -> int:
    """Characters of extractable text in the first ``pages`` pages (a scan has none)."""
    n = 0
    for page in reader.pages[:pages]:
        try:
            n += len((page.extract_text() or "").strip())
        except Exception:  # noqa: BLE001 - a page pypdf cannot read counts as no text
            continue
    return n


CHECKS = {".ipynb": check_notebook, ".pdf": check_pdf}
