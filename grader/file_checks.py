"""What intake checks of a required file's content: a notebook is a readable notebook (old
formats converted), a PDF a real, openable PDF with pages (and text a program can read). Each
check returns its findings; intake files them under the required name."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from grader import notebook_file
from grader.notebook_file import quiet
from grader.text_safety import first_line


@dataclass
class Findings:
    problem: str | None = None          # the file cannot be graded, in words for the student
    warnings: list[str] = field(default_factory=list)
    document: dict | None = None        # what staff see of a PDF (pages, extractable characters)


def check_notebook(path: Path, name: str) -> Findings:
    res = Findings()
    got = notebook_file.read(path)
    if got.nb is None:
        res.problem = f"not a valid notebook: {got.problem}"
        return res
    if got.major is not None and got.major < 4:
        import nbformat  # deferred: heavy import
        nbformat.write(got.nb, str(path))
        res.warnings.append(
            f"'{name}' is an old nbformat {got.major} notebook; it was converted to nbformat 4 for grading"
        )
    if got.invalid:   # schema problems only lower confidence; the executor says whether it runs
        res.warnings.append(f"'{name}' does not fully follow the notebook format: {got.invalid}")
    if not got.nb.cells:
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
        with quiet("pypdf"):
            reader = pypdf.PdfReader(str(path))
            if reader.is_encrypted and not reader.decrypt(""):
                res.problem = "the PDF is password-protected"
                return res
            pages = len(reader.pages)
            chars = _text_chars(reader)
    # pypdf's errors on damaged files range over PdfReadError, ValueError, KeyError, ...
    except Exception as e:  # noqa: BLE001
        res.problem = f"not a real PDF (it cannot be opened: {first_line(e)})"
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
