"""The kernel's own stdout and stderr (launcher and bwrap messages, raw writes to fd 1/2): a pipe
the grader drains on a thread of its own, keeping the start and the end and dropping the rest,
so a kernel that floods them neither blocks nor fills the grader's memory."""
from __future__ import annotations

import os
import select
import subprocess
import threading

OUTPUT_HEAD_BYTES = 4 << 10
OUTPUT_TAIL_BYTES = 16 << 10


class KernelOutput:
    def __init__(self) -> None:
        self.read_end: int | None = None
        self.write_end: int | None = None
        self.total = 0                     # all the kernel wrote to its stdout/stderr
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._head = bytearray()
        self._tail = bytearray()

    def open(self) -> None:
        self.read_end, self.write_end = os.pipe()      # both non-inheritable; Popen dup2s the write end
        os.set_blocking(self.read_end, False)
        self._thread = threading.Thread(target=self._drain, name="sandbox-output", daemon=True)
        self._thread.start()

    def launch_io(self) -> dict:
        """Popen arguments for the launcher: no stdin, stdout and stderr into the drained pipe."""
        return {"stdin": subprocess.DEVNULL, "stdout": self.write_end, "stderr": self.write_end}

    def _drain(self) -> None:
        poller = select.poll()
        poller.register(self.read_end, select.POLLIN)
        while not self._stop.is_set():
            try:
                ready = poller.poll(200)
            except OSError:
                return
            if ready and not self._read():
                return

    def _read(self, max_chunks: int = 64) -> bool:
        """Read what the pipe holds (bounded per call); False at end of file or once closed."""
        with self._lock:
            if self.read_end is None:
                return False
            for _ in range(max_chunks):
                try:
                    chunk = os.read(self.read_end, 1 << 16)
                except BlockingIOError:
                    return True
                except OSError:
                    return False
                if not chunk:
                    return False
                self.total += len(chunk)
                room = OUTPUT_HEAD_BYTES - len(self._head)
                if room > 0:
                    self._head += chunk[:room]
                    chunk = chunk[room:]
                if chunk:
                    self._tail += chunk
                    del self._tail[:-OUTPUT_TAIL_BYTES]
            return True

    def kernel_started(self) -> None:
        """The launcher has the pipe now: the grader's copy of its write end is not needed."""
        with self._lock:
            if self.write_end is not None:
                os.close(self.write_end)
                self.write_end = None

    def close(self) -> None:
        self.kernel_started()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        self._read()
        with self._lock:
            if self.read_end is not None:
                os.close(self.read_end)
                self.read_end = None

    def log(self, limit: int = 2000) -> str:
        """The end of what the launcher, bwrap and the kernel wrote to stdout/stderr."""
        self._read()
        with self._lock:
            dropped = self.total - len(self._head) - len(self._tail)
            data = bytes(self._head) + (f"\n[{dropped} bytes not kept]\n".encode() if dropped > 0 else b"")
            data += bytes(self._tail)
        return data[-limit:].decode("utf-8", "replace").strip()
