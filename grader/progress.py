"""What a person watching a batch sees: a live line on a terminal, plain lines in a log.

On a terminal: one tqdm bar with done/total, failures so far, elapsed time and ETA. Anywhere
else (a pipe, a Slurm log, CI): one line per finished submission, nothing that redraws.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

from tqdm import tqdm

from grader.record import Record

FAILED = ("error",)            # the grader could not grade it: staff must look


def _shown(name: str) -> str:
    return name if name.isprintable() else ascii(name)


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, live: bool | None = None,
                 log: Callable[[str], None] | None = None):
        self.total, self.done, self.failed = total, 0, 0
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.slowest: list[tuple[float, str]] = []
        live = self.stream.isatty() if live is None else live
        self._log = log or (lambda m: print(m, file=self.stream, flush=True))
        self.bar = tqdm(total=total, file=self.stream, unit="zip", dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}] {postfix}") \
            if live and total else None

    def note(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            self._log(message)

    def reused(self, name: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        else:
            self._log(f"[{self.done}/{self.total}] {_shown(name)}: reusing the record from an earlier run "
                      "(up to date)")

    def queued(self, names: list[str]) -> None:
        """Plain mode only: which submissions are being graded (a live bar counts them instead)."""
        if self.bar is None:
            for name in names:
                self._log(f"{_shown(name)}: grading")

    def finished(self, rec: Record) -> None:
        self.done += 1
        self.failed += rec.status in FAILED
        seconds = float(rec.timing.get("total_s", 0) or 0)
        self.slowest = sorted(self.slowest + [(seconds, rec.zip_name)], reverse=True)[:5]
        if self.bar is not None:
            self.bar.set_postfix_str(f"failures {self.failed}", refresh=False)
            self.bar.update(1)
            return
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        self._log(f"[{self.done}/{self.total}] {_shown(rec.zip_name)}: {rec.status}, "
                  f"{rec.score.get('final', 0):g} points ({seconds:.1f} s); failures {self.failed}; "
                  f"elapsed {elapsed:.0f} s, about {eta:.0f} s left")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
