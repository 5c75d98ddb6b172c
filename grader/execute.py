"""Execute one student notebook in the sandbox, cell by cell, and report what happened."""
from __future__ import annotations

import ast
import asyncio
import atexit
import collections
import dataclasses
import json
import os
import queue
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import zmq
import zmq.utils.monitor
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from grader import colab
from grader.devices import kernel_env
from grader.environment import install_code
from grader.sandbox import (KERNEL_NAME, PROBE_MOUNT, Sandbox,
                            SandboxError, find_tool)
from grader.selfcheck import failed_self_check

__all__ = ["ExecSettings", "CellResult", "ProbeRequest", "ProbeResult", "NotebookRun",
           "SandboxError", "execute_notebook", "preflight", "read_notebook"]

MAX_IMAGES_PER_CELL = 50
MAX_IMAGE_CHARS = 4_000_000          # base64 characters of one image
MAX_IMAGE_CHARS_TOTAL = 20_000_000   # base64 characters of all images kept from one notebook
TEXT_CELLS_BUDGET = 50               # text kept from one notebook: this many cells' worth
MAX_KEPT_TRACEBACKS = 20             # error cells whose traceback goes into the record
DISK_POLL_S = 0.1
MAX_TRACEBACK_LINES = 200
# All the probe's answers of one notebook (a training's weights before every step: up to 128 MB).
PROBE_OUT_MAX_BYTES = 256 << 20
HIDDEN_CELLS_S = 300                 # kernel start, sandbox check, environment and prelude, at most
# What the kernel sends the grader: the default size of one message (frame), checked by ZMQ
# before it is read (rubric: execution.max_message_mb); the grader's own memory the messages
# of one notebook may take, watched; kept outputs.
MAX_MESSAGE_MB = 32
GRADER_MEMORY_MB = 512
MEMORY_POLL_S = 0.01
CLIENT_RCVHWM = 4                    # messages queued per socket before the kernel must wait
MAX_OUTPUTS = 10_000                 # outputs kept from one notebook
MAX_OUTPUTS_PER_CELL = 1000
MAX_ERRORS_PER_CELL = 3
MAX_MIME_KEYS = 20
MAX_METADATA_CHARS = 10_000
MAX_REPLY_CHUNKS = 2000             # traceback chunks of an execute reply that are read
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class ExecSettings:
    cell_timeout_s: float = 600
    notebook_timeout_s: float = 1800
    memory_mb: int = 4096
    pids_max: int = 256
    tmp_mb: int = 512
    fsize_mb: int = 512
    cpu_s: int = 3600
    colab: str = "neutralize"
    max_output_chars: int = 20000
    probe_timeout_s: float = 300
    disk_mb: int = 2048                  # work folder + probe output, polled; the kernel is killed beyond
    max_files: int = 20000
    interrupt_grace_s: float = 30        # a cell at its limit is interrupted; killed if it is still running after this
    max_message_mb: int = MAX_MESSAGE_MB  # a larger message from the kernel is a protocol violation
    grader_memory_mb: int = GRADER_MEMORY_MB  # the grader's memory the kernel's messages may take
    device: str = "cpu"                  # "cpu" (GPU code runs on the CPU) or "cuda:N" (grader/devices.py)
    gpu_nodes: tuple[str, ...] = ()      # /dev nodes the kernel gets with its GPU
    threads: int = 1                     # CPU cores of the kernel (cgroup cpu quota); the rubric's execution.threads
    limits_why: str = ""                 # how cell_timeout_s and notebook_timeout_s were set (grader/limits.py)


@dataclass
class CellResult:
    index: int
    status: str
    seconds: float
    error_name: str | None = None
    error_value: str | None = None
    traceback: str | None = None
    # "assert" | "gradcheck": the error was the notebook's own failed self-check, read by the
    # grader from the traceback's failing line in its copy of the cell (grader/selfcheck.py)
    self_check: str | None = None


@dataclass
class ProbeRequest:
    code: str
    in_dir: Path
    out_dir: Path


@dataclass
class ProbeResult:
    status: str
    seconds: float
    error: str | None


@dataclass
class NotebookRun:
    # completed | errors | timeout | kernel_died | protocol_violation | sandbox_failed | invalid
    status: str
    message: str
    first_error_cell: int | None
    cells: list[CellResult]
    seconds: float
    limits: dict[str, str]
    neutralized: list[dict]
    probe: ProbeResult | None
    executed_path: Path | None
    device: str = "cpu"                 # where the kernel's torch ran the notebook

    def executable(self) -> bool:
        return self.status == "completed"


# ---------------------------------------------------------------- helpers

def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def trim_traceback(lines: list[str] | str | None, max_lines: int = 40,
                   max_chars: int = 4000) -> str | None:
    if not lines:
        return None
    text = strip_ansi("\n".join(lines) if isinstance(lines, list) else lines)
    rows = text.splitlines()
    if len(rows) > max_lines:
        head = max_lines // 4
        rows = rows[:head] + [f"... ({len(rows) - max_lines} lines omitted) ..."] + rows[head - max_lines:]
    text = "\n".join(rows)
    if len(text) > max_chars:
        text = "... " + text[-max_chars:]
    return text


def _short(text: str | None, n: int = 300) -> str:
    text = strip_ansi(text or "").strip().replace("\n", " ")
    return text if len(text) <= n else text[: n - 3] + "..."


def _cell_label(nb: nbformat.NotebookNode, index: int) -> str:
    code_no = sum(1 for c in nb.cells[: index + 1] if c.cell_type == "code")
    return f"code cell {code_no} (cell {index + 1} of the notebook)"


def _source(cell: nbformat.NotebookNode) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


class _BoundedClient(NotebookClient):
    """NotebookClient that keeps what the kernel sends small, in transit and once kept.

    In transit: the client's sockets drop any message frame larger than ``max_message_bytes``
    before reading it (ZMQ's maximum message size; the connection to the kernel goes with it,
    which the socket monitors see), queue few messages, and a thread watches the grader's own
    memory (a message may have any number of frames below the limit). Either ends the run as a
    protocol violation: ``violation`` says why, and ``kill`` stops the kernel.

    Kept: every message is rebuilt from the fields the grader uses, each of bounded size;
    stream text beyond half the budget goes to a rolling tail so the end of a long log (usually
    the interesting part) survives; images beyond a count are dropped; widget messages are not
    kept at all.
    """

    def __init__(self, nb: nbformat.NotebookNode, km: AsyncKernelManager, max_chars: int,
                 grace_s: float = 30.0, max_message_bytes: int = MAX_MESSAGE_MB << 20,
                 memory_budget_bytes: int = GRADER_MEMORY_MB << 20, **kw: Any) -> None:
        kw.setdefault("store_widget_state", False)
        super().__init__(nb, km=km, **kw)
        self._max_chars = max(max_chars, 200)
        # Budgets for the whole notebook, so many cells of floods stay small too.
        self._text_left = self._max_chars * TEXT_CELLS_BUDGET
        self._image_chars_left = MAX_IMAGE_CHARS_TOTAL
        self._outputs_left = MAX_OUTPUTS
        self.grace_s = grace_s
        self.interrupted = False        # the current cell reached its limit (set by _async_handle_timeout)
        self.max_message_bytes = int(max_message_bytes)
        self.memory_budget_bytes = int(memory_budget_bytes)
        self.violation = ""             # why the kernel broke the limits on its messages
        self.violation_cell: int | None = None
        self._violation_lock = threading.Lock()
        self.current_index: int | None = None   # the notebook cell running now (set by the caller)
        self.kill: Any = None           # stops the kernel (set by the caller)
        self._guard_tasks: list[asyncio.Future] = []
        self._monitored: list[Any] = []
        self._memory_stop = threading.Event()
        # The manager's own control socket (interrupts, shutdown) and the client's sockets.
        _limit_context(km.context, self.max_message_bytes)
        km.client_factory = _limited_client_class(self.max_message_bytes)
        self.begin_cell()

    # -- the limits in transit

    async def async_start_new_kernel_client(self) -> Any:
        kc = await super().async_start_new_kernel_client()
        self._start_guard()
        return kc

    def _start_guard(self) -> None:
        kc = self.kc
        assert kc is not None
        for name in ("shell", "iopub", "stdin", "control"):
            sock = getattr(getattr(kc, f"{name}_channel", None), "socket", None)
            if sock is None:
                continue
            monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            self._monitored.append((sock, monitor))
            self._guard_tasks.append(asyncio.ensure_future(self._watch_socket(name, monitor)))
        baseline = _rss_bytes()
        if baseline is not None:
            threading.Thread(target=self._watch_memory, args=(baseline,), daemon=True,
                             name="grader-message-memory").start()

    async def _watch_socket(self, channel: str, monitor: Any) -> None:
        """A connection the grader's side dropped while the kernel lives: ZMQ closes it on a
        frame beyond the maximum size (or one that breaks the wire protocol)."""
        assert self.km is not None
        try:
            while True:
                event = zmq.utils.monitor.parse_monitor_message(await monitor.recv_multipart())
                if event.get("event") != zmq.EVENT_DISCONNECTED:
                    continue
                cell = self.current_index
                # A kernel that exits closes its connections too; it is not alive a moment later.
                await asyncio.sleep(1.0)
                if await self.km.is_alive() and self._violated(
                        f"the notebook sent a message larger than {_mb(self.max_message_bytes)} to the "
                        f"grader (on the kernel's {channel} channel)", cell):
                    await asyncio.to_thread(self._stop_kernel)
                return
        except (asyncio.CancelledError, zmq.ZMQError):
            return

    def _watch_memory(self, baseline: int) -> None:
        while not self._memory_stop.wait(MEMORY_POLL_S):
            rss = _rss_bytes()
            if rss is not None and rss - baseline > self.memory_budget_bytes:
                if self._violated(f"the notebook's messages took more than {_mb(self.memory_budget_bytes)} "
                                  "of the grader's memory", self.current_index):
                    self._stop_kernel()
                return

    def _violated(self, why: str, cell: int | None) -> bool:
        """Record the first violation; True if this was it."""
        with self._violation_lock:
            if self.violation:
                return False
            self.violation, self.violation_cell = why, cell
            return True

    def _stop_kernel(self) -> None:
        if self.kill is not None:
            try:
                self.kill()
            except Exception:
                pass

    def stop_guard(self) -> None:
        self._memory_stop.set()
        for task in self._guard_tasks:
            task.cancel()
        for sock, monitor in self._monitored:
            try:
                sock.disable_monitor()
            except zmq.ZMQError:
                pass
            monitor.close(linger=0)
        self._guard_tasks, self._monitored = [], []

    # -- what is kept

    async def _async_handle_timeout(self, timeout: int, cell: nbformat.NotebookNode | None = None) -> dict | None:
        """At the limit, interrupt the cell (KeyboardInterrupt in the kernel) and wait up to
        ``grace_s`` for its reply: the kernel and what it holds survive, later cells still run.
        A cell that ignores the interrupt raises CellTimeoutError and the kernel is stopped."""
        self.interrupted = True
        assert self.km is not None and self.kc is not None
        try:
            await self.km.interrupt_kernel()
        except Exception:
            raise CellTimeoutError.error_from_timeout_and_cell("Cell execution timed out", timeout, cell)
        deadline = time.monotonic() + self.grace_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await self.kc.shell_channel.get_msg(timeout=min(left, 1.0))
            except queue.Empty:
                if not await self.kc.is_alive():
                    raise DeadKernelError("Kernel died") from None
                continue
            # Only this cell's request is outstanding on the shell channel.
            if msg.get("msg_type") == "execute_reply":
                return msg
        raise CellTimeoutError.error_from_timeout_and_cell("Cell execution timed out", timeout, cell)

    def begin_cell(self) -> None:
        self._head_chars = 0
        self._images = 0
        self._dropped_images = 0
        self._dropped_chars = 0
        self._outputs = 0
        self._errors = 0
        self._tail: collections.deque[tuple[str, str]] = collections.deque()
        self._tail_chars = 0

    def process_message(self, msg: dict, cell: nbformat.NotebookNode, cell_index: int) -> Any:
        clean = _clean_message(msg)
        if clean is None:
            return None
        return super().process_message(clean, cell, cell_index)

    def handle_comm_msg(self, outs: list, msg: dict, cell_index: int) -> None:
        return None                     # widget state and widget outputs are not kept

    def _update_display_id(self, display_id: str, msg: dict) -> None:
        if display_id not in self._display_id_map:
            return
        data = self._keep_data(msg["content"].get("data", {}))
        if data is not None:
            super()._update_display_id(display_id, {**msg, "content": {**msg["content"], "data": data}})

    def _keep_data(self, data: dict) -> dict | None:
        """A mime bundle within the per-cell and per-notebook budgets (charged here), or None."""
        data = dict(data)
        images = [k for k in data if k.startswith("image/")]
        if images:
            if not all(isinstance(data[k], str) for k in images):
                self._dropped_images += 1
                return None
            size = sum(len(data[k]) for k in images)
            if (self._images >= MAX_IMAGES_PER_CELL or size > self._image_chars_left
                    or any(len(data[k]) > MAX_IMAGE_CHARS for k in images)):
                self._dropped_images += 1
                return None
            self._images += 1
            self._image_chars_left -= size
        for key in [k for k in data if not k.startswith("image/")]:
            value = data[key]
            if not isinstance(value, str):
                size = _json_size(value)
                if size > self._max_chars or self._text_left <= 0:
                    del data[key]           # a JSON value is kept whole or not at all
                    self._dropped_chars += size
                else:
                    self._text_left -= size
                continue
            if self._text_left <= 0:
                del data[key]
                self._dropped_chars += len(value)
                continue
            if len(value) > self._max_chars:
                data[key] = value[: self._max_chars] + "\n[output truncated]"
                self._dropped_chars += len(value) - self._max_chars
            self._text_left -= len(data[key])
        return data or None

    def output(self, outs: list, msg: dict, display_id: str | None, cell_index: int) -> Any:
        msg_type = msg["msg_type"]
        content = msg.get("content", {})
        if self._outputs >= MAX_OUTPUTS_PER_CELL or self._outputs_left <= 0:
            self._dropped_chars += len(content.get("text", "")) if msg_type == "stream" else 0
            return None
        if msg_type == "stream":
            text = str(content.get("text", ""))
            if self._text_left <= 0:
                self._dropped_chars += len(text)
                return None
            room = min(self._max_chars // 2 - self._head_chars, self._text_left)
            if room <= 0:
                self._to_tail(content.get("name", "stdout"), text)
                return None
            if len(text) > room:
                self._to_tail(content.get("name", "stdout"), text[room:])
                text = text[:room]
            self._head_chars += len(text)
            self._text_left -= len(text)
            msg = {**msg, "content": {**content, "text": text}}
        elif msg_type in ("display_data", "execute_result"):
            data = self._keep_data(content.get("data", {}))
            if data is None:
                return None
            msg = {**msg, "content": {**content, "data": data}}
        elif msg_type == "error":
            self._errors += 1
            size = sum(len(line) for line in content.get("traceback", [])) + len(content.get("evalue", ""))
            if self._errors > MAX_ERRORS_PER_CELL or self._text_left <= 0:
                self._dropped_chars += size
                return None
            self._text_left -= size
        out = super().output(outs, msg, display_id, cell_index)
        if out is not None:
            self._outputs += 1
            self._outputs_left -= 1
        return out

    def _to_tail(self, name: str, text: str) -> None:
        self._tail.append((name, text))
        self._tail_chars += len(text)
        limit = self._max_chars // 2
        while self._tail_chars > limit and self._tail:
            first_name, first = self._tail[0]
            excess = self._tail_chars - limit
            if len(first) <= excess:
                self._tail.popleft()
                self._tail_chars -= len(first)
                self._dropped_chars += len(first)
            else:
                self._tail[0] = (first_name, first[excess:])
                self._tail_chars -= excess
                self._dropped_chars += excess

    def finish_cell(self, cell: nbformat.NotebookNode) -> None:
        tail = []
        for name, text in self._tail:
            if self._text_left > 0:
                tail.append((name, text))
                self._text_left -= len(text)
            else:
                self._dropped_chars += len(text)
        if self._dropped_chars or self._dropped_images:
            note = (f"\n[grader] output truncated: {self._dropped_chars} characters and "
                    f"{self._dropped_images} images were not kept\n")
            cell.outputs.append(nbformat.v4.new_output("stream", name="stderr", text=note))
        for name, text in tail:
            cell.outputs.append(nbformat.v4.new_output("stream", name=name, text=text))
        self.begin_cell()


# ---------------------------------------------------------------- what the kernel sends

_KEPT_MESSAGES = frozenset({"status", "execute_input", "clear_output", "stream", "display_data",
                            "execute_result", "update_display_data", "error"})


def _text(value: Any, n: int) -> str:
    return value[:n] if isinstance(value, str) else ""


def _json_size(value: Any) -> int:
    try:
        return len(json.dumps(value))
    except (TypeError, ValueError, RecursionError):
        return 1 << 62


def _mb(n: int) -> str:
    return f"{n / 2**20:g} MB"


def _clean_message(msg: dict) -> dict | None:
    """An iopub message as the grader uses it, or None for one it does not keep (widgets, unknown
    types): rebuilt from known fields only, each of a bounded size or type, so what the kernel
    adds (huge metadata, names, counts, buffers) is not kept."""
    msg_type = msg.get("msg_type")
    content = msg.get("content")
    if msg_type not in _KEPT_MESSAGES or not isinstance(content, dict):
        return None
    out: dict[str, Any] = {}
    if msg_type == "status":
        state = content.get("execution_state")
        out["execution_state"] = state if state in ("busy", "idle", "starting") else "busy"
    elif msg_type == "clear_output":
        out["wait"] = bool(content.get("wait"))
    elif msg_type == "stream":
        out["name"] = "stderr" if content.get("name") == "stderr" else "stdout"
        out["text"] = content.get("text") if isinstance(content.get("text"), str) else ""
    elif msg_type == "error":
        tb = content.get("traceback")
        tb = [line for line in tb if isinstance(line, str)] if isinstance(tb, list) else []
        if len(tb) > MAX_TRACEBACK_LINES:
            tb = tb[:20] + ["..."] + tb[-(MAX_TRACEBACK_LINES - 21):]
        out.update(ename=_text(content.get("ename"), 200), evalue=_text(content.get("evalue"), 5000),
                   traceback=[line[:5000] for line in tb])
    elif msg_type != "execute_input":   # display_data, execute_result, update_display_data
        data = content.get("data")
        out["data"] = ({k: v for k, v in list(data.items())[:MAX_MIME_KEYS] if isinstance(k, str) and len(k) <= 100}
                       if isinstance(data, dict) else {})
        meta = content.get("metadata")
        out["metadata"] = meta if isinstance(meta, dict) and _json_size(meta) <= MAX_METADATA_CHARS else {}
        transient = content.get("transient")
        display_id = transient.get("display_id") if isinstance(transient, dict) else None
        if isinstance(display_id, str) and len(display_id) <= 200:
            out["transient"] = {"display_id": display_id}
    count = content.get("execution_count")
    if msg_type == "execute_result":
        out["execution_count"] = count if type(count) is int else None
    elif msg_type == "execute_input" and type(count) is int:
        out["execution_count"] = count
    parent = msg.get("parent_header")
    header = msg.get("header")
    msg_id = header.get("msg_id") if isinstance(header, dict) else None
    return {"msg_type": msg_type, "content": out, "metadata": {}, "buffers": [],
            "header": {"msg_type": msg_type, "msg_id": _text(msg_id, 200)},
            "parent_header": {"msg_id": parent.get("msg_id")} if isinstance(parent, dict) else {}}


def _clean_reply(content: Any) -> dict:
    """What the grader reads of a cell's execute_reply."""
    if not isinstance(content, dict):
        return {}
    tb = content.get("traceback")
    tb = [line[:20000] for line in tb if isinstance(line, str)] if isinstance(tb, list) else []
    cut = len(tb) > MAX_REPLY_CHUNKS
    if cut:
        tb = tb[:100] + ["..."] + tb[-(MAX_REPLY_CHUNKS - 101):]
    count = content.get("execution_count")
    return {"status": _text(content.get("status"), 20), "ename": _text(content.get("ename"), 1000),
            "evalue": _text(content.get("evalue"), 20000), "traceback": tb, "traceback_cut": cut,
            "execution_count": count if type(count) is int else None}


def _limit_context(ctx: Any, max_bytes: int) -> None:
    """Sockets made from ``ctx`` from now on read no message frame beyond ``max_bytes`` (ZMQ
    checks the size before reading and drops the connection of the peer that sent it) and
    queue few messages before the sender must wait."""
    ctx.setsockopt(zmq.MAXMSGSIZE, int(max_bytes))
    ctx.setsockopt(zmq.RCVHWM, CLIENT_RCVHWM)


def _limited_client_class(max_bytes: int) -> type:
    class LimitedKernelClient(AsyncKernelClient):
        def _context_default(self) -> Any:
            ctx = super()._context_default()
            _limit_context(ctx, max_bytes)
            return ctx
    return LimitedKernelClient


try:
    _PAGE = os.sysconf("SC_PAGE_SIZE")
except (ValueError, OSError, AttributeError):
    _PAGE = 4096


def _rss_bytes() -> int | None:
    """The grader's resident memory now."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


# ---------------------------------------------------------------- hidden cells

# Hidden grader code runs as a user expression of an empty execute request: IPython evaluates
# those with plain eval after the (empty, so not run) cell, and the code itself with exec, so
# no input or AST transformer, cell event, display or traceback hook a notebook installed
# touches it. The wrapper reports the code's own outcome as the expression's value.
_HIDDEN_KEY = "_grader"
_HIDDEN_WRAPPER = (
    "try:\n"
    "    exec(compile(_s, '<grader>', 'exec'), _g)\n"
    "    _r = repr(('ok', '', '', ''))\n"
    "except BaseException as _e:\n"
    "    try:\n"
    "        import traceback as _t\n"
    "        _r = repr(('error', type(_e).__name__, str(_e)[:5000],\n"
    "                   ''.join(_t.format_exception(_e))[-20000:]))\n"
    "    except BaseException:\n"
    "        _r = repr(('error', type(_e).__name__, '', ''))\n")


def _hidden_expression(code: str) -> str:
    """The user expression that runs ``code`` in the notebook's namespace."""
    return ("(lambda _d: (__import__('builtins').exec(_d['_w'], _d), _d['_r'])[1])("
            f"{{'_w': {_HIDDEN_WRAPPER!r}, '_s': {code!r}, '_g': __import__('builtins').globals(), '_r': None}})")


def _hidden_outcome(reply: dict) -> dict:
    """(the reply content callers read) from the wrapper's report; an error when there is none."""
    if reply.get("status") != "ok":
        return {"status": "error", "ename": _text(reply.get("ename"), 200) or "Error",
                "evalue": _text(reply.get("evalue"), 5000), "traceback": []}
    value = (reply.get("user_expressions") or {}).get(_HIDDEN_KEY)
    if not isinstance(value, dict):
        return {"status": "error", "ename": "Error", "evalue": "the hidden code did not report back",
                "traceback": []}
    if value.get("status") != "ok":
        tb = value.get("traceback")
        return {"status": "error", "ename": _text(value.get("ename"), 200) or "Error",
                "evalue": _text(value.get("evalue"), 5000),
                "traceback": [t for t in tb if isinstance(t, str)][:200] if isinstance(tb, list) else []}
    try:
        text = (value.get("data") or {}).get("text/plain")
        report = ast.literal_eval(ast.literal_eval(text)) if isinstance(text, str) and len(text) < 200_000 else None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        report = None
    if not (isinstance(report, tuple) and len(report) == 4 and all(isinstance(x, str) for x in report)):
        return {"status": "error", "ename": "Error", "evalue": "the hidden code's report could not be read",
                "traceback": []}
    status, ename, evalue, tb = report
    if status == "ok":
        return {"status": "ok"}
    return {"status": "error", "ename": ename[:200], "evalue": evalue[:5000], "traceback": [tb] if tb else []}


async def _run_hidden(client: NotebookClient, code: str, timeout: float,
                      max_chars: int = 200_000) -> tuple[str, str, dict]:
    """Run code in the kernel outside the notebook; (status, stdout, reply content).

    status is "ok", "error", "timeout" or "kernel_died".
    """
    kc, km = client.kc, client.km
    assert kc is not None and km is not None
    msg_id = kc.execute("", silent=True, store_history=False, allow_stdin=False, stop_on_error=False,
                        user_expressions={_HIDDEN_KEY: _hidden_expression(code)})
    out: list[str] = []
    size = 0
    reply: dict | None = None
    idle = False
    deadline = time.monotonic() + timeout
    reply_at = 0.0
    while reply is None or not idle:
        now = time.monotonic()
        if reply is not None and now - reply_at > 5:
            break  # the idle status was lost (e.g. an output flood); the reply is what counts
        if now > deadline:
            return "timeout", "".join(out), {}
        got = False
        try:
            msg = await kc.get_iopub_msg(timeout=0.05)
            got = True
            parent = msg.get("parent_header")
            content = msg.get("content")
            if isinstance(parent, dict) and parent.get("msg_id") == msg_id and isinstance(content, dict):
                if msg.get("msg_type") == "stream" and content.get("name") == "stdout":
                    text = content.get("text")
                    if isinstance(text, str) and size < max_chars:
                        out.append(text[: max_chars - size])
                        size += len(text)
                elif msg.get("msg_type") == "status" and content.get("execution_state") == "idle":
                    idle = True
        except queue.Empty:
            pass
        if reply is None:
            try:
                msg = await kc.get_shell_msg(timeout=0.05)
                got = True
                parent = msg.get("parent_header")
                if isinstance(parent, dict) and parent.get("msg_id") == msg_id:
                    content = msg.get("content")
                    reply, reply_at = (content if isinstance(content, dict) else {}), time.monotonic()
            except queue.Empty:
                pass
        if not got and not await km.is_alive():
            return "kernel_died", "".join(out), {}
    outcome = _hidden_outcome(reply)
    return outcome["status"], "".join(out), outcome


# ---------------------------------------------------------------- the run

@dataclass
class _State:
    nb: nbformat.NotebookNode
    cells: list[CellResult]
    current: int | None = None
    current_started: float = 0.0
    outcome: str | None = None          # "timeout" | "kernel_died" | "sandbox_failed" | "notebook_timeout"
    detail: str = ""
    canary: str = ""
    probe: ProbeResult | None = None
    km: Any = None
    why_stopped: str = ""               # why the grader stopped a kernel it found misbehaving
    prelude: str | None = None          # grader code run hidden before the first cell
    prelude_status: str = ""
    before: dict = dataclasses.field(default_factory=dict)   # cell index -> hidden grader code run just before it
    stop: Any = None                    # asyncio.Event set by SIGINT/SIGTERM: staff stopped the grader
    interrupted: bool = False
    timed_out: list[tuple[int, str]] = dataclasses.field(default_factory=list)   # (cell, "cell" | "notebook") interrupted at a limit
    notebook_limit_hit: bool = False    # the notebook's own limit ended the cells
    violation: str = ""                 # how the kernel broke the limits on its messages (the kernel was stopped)
    violation_cell: int | None = None   # the cell running when it did


def _copy_out(src: Path, dst: Path) -> None:
    """Copy regular files the probe wrote, never following links the kernel may have planted."""
    budget = PROBE_OUT_MAX_BYTES
    dst.mkdir(parents=True, exist_ok=True)
    for root, _dirs, files in os.walk(src, followlinks=False):
        rel = Path(root).relative_to(src)
        for name in files:
            path = Path(root) / name
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as f:
                if not os.path.isfile(f"/proc/self/fd/{f.fileno()}") or os.fstat(f.fileno()).st_size > budget:
                    continue
                (dst / rel).mkdir(parents=True, exist_ok=True)
                target = dst / rel / name
                copied = 0
                with open(target, "wb") as out:
                    # In blocks, so the grader holds at most one block of a large answer.
                    for block in iter(lambda: f.read(min(1 << 20, budget - copied + 1)), b""):
                        copied += len(block)
                        if copied > budget:
                            break
                        out.write(block)
                if copied > budget:       # grew while being read: not an answer
                    target.unlink()
                    continue
                budget -= copied


def _disk_usage(roots: list[Path], max_entries: int) -> tuple[int, int]:
    """(bytes used, entries) under roots, links not followed; stops past max_entries."""
    used = entries = 0
    stack = [str(r) for r in roots]
    while stack and entries <= max_entries:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    # Delayed allocation leaves st_blocks behind freshly written data for a
                    # while; the size is what the kernel has written, so count the larger.
                    used += max(st.st_blocks * 512, st.st_size if entry.is_file(follow_symlinks=False) else 0)
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            continue
    return used, entries


async def _watch_disk(state: _State, sbx: Sandbox, settings: ExecSettings, workdir: Path) -> None:
    """RLIMIT_FSIZE caps one file; this caps what the kernel writes to host disk in total
    (work folder, probe output, connection folder), polled, by killing the kernel."""
    roots = [workdir, sbx.stage_out, sbx.conn_dir]
    limit = settings.disk_mb << 20
    while True:
        await asyncio.sleep(DISK_POLL_S)
        used, entries = await asyncio.to_thread(_disk_usage, roots, settings.max_files)
        if used > limit or entries > settings.max_files:
            state.why_stopped = (f"it wrote more than the {settings.disk_mb} MiB allowed on disk" if used > limit
                          else f"it created more than the {settings.max_files} files allowed")
            await asyncio.to_thread(sbx.kill_all, 5.0)
            return


def _clear_dir(path: Path) -> None:
    for entry in list(path.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            try:
                entry.unlink()
            except OSError:
                pass


async def _drive(state: _State, sbx: Sandbox, settings: ExecSettings, workdir: Path,
                 probe: ProbeRequest | None) -> None:
    nb = state.nb
    ksm = KernelSpecManager(kernel_dirs=sbx.kernel_dirs)
    km = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm, transport="ipc",
                            connection_file=sbx.connection_file)
    km.ip = sbx.ipc_prefix
    # A kernel spec that silently resolved elsewhere would run unsandboxed.
    argv = km.kernel_spec.argv
    if not argv or argv[0] != str(sbx.launcher):
        raise SandboxError(f"kernel spec resolved to {argv!r}, not the sandbox launcher")
    # Each cell gets the per-cell limit, or what is left of the notebook's, whichever is less.
    notebook_deadline = [float("inf")]

    def cell_limit(_cell: Any) -> float:
        return max(1.0, min(float(settings.cell_timeout_s), notebook_deadline[0] - time.monotonic()))

    client = _BoundedClient(nb, km, settings.max_output_chars, grace_s=settings.interrupt_grace_s,
                            timeout_func=cell_limit, allow_errors=True, interrupt_on_timeout=False,
                            startup_timeout=60, iopub_timeout=5, raise_on_iopub_timeout=False,
                            coalesce_streams=True, record_timing=False,
                            resources={"metadata": {"path": str(workdir)}},
                            max_message_bytes=int(settings.max_message_mb) << 20,
                            memory_budget_bytes=int(settings.grader_memory_mb) << 20)
    client.kill = lambda: sbx.kill_all(5.0)
    replies: dict[int, dict] = {}
    client.on_cell_executed = lambda cell, cell_index, execute_reply: replies.__setitem__(
        cell_index, _clean_reply(execute_reply.get("content") if execute_reply else None))
    sent: dict[int, str] = {}           # execution count -> the cell's source as sent
    state.km = km
    try:
        try:
            setup = client.async_setup_kernel(**sbx.launch_io())
            await setup.__aenter__()
        except Exception as e:
            # nbclient registered an atexit cleanup before the failed start; it would assert later.
            atexit.unregister(client._cleanup_kernel)
            state.outcome = "sandbox_failed"
            log = sbx.launch_log()
            state.detail = f"the sandboxed kernel did not start ({_short(str(e), 200)})" + (
                f"; launcher said: {_short(log, 400)}" if log else "")
            return
        _own_signals(state)  # nbclient's setup just replaced them
        watchdog = asyncio.ensure_future(_watch_disk(state, sbx, settings, workdir))
        try:
            proc = getattr(km.provisioner, "process", None)
            await asyncio.to_thread(sbx.note_started, getattr(proc, "pid", None))
            port = sbx.open_listener()
            status, stdout, _ = await _run_hidden(client, sbx.canary_code(port), 30)
            ok, summary, _report = sbx.check_canary(stdout)
            if status != "ok" or not ok:
                state.outcome = "sandbox_failed"
                state.detail = f"sandbox check failed: {summary if not ok else status}"
                return
            state.canary = summary
            # The course environment (google.colab, torchvision, tqdm, GPU code on the CPU).
            status, _out, reply = await _run_hidden(
                client, install_code(cuda_fallback=settings.device == "cpu"), 60)
            if status != "ok":
                state.outcome = "sandbox_failed"
                state.detail = (f"the course environment could not be set up in the kernel ({status}: "
                                f"{_short(reply.get('ename'), 80)} {_short(reply.get('evalue'), 200)})")
                return
            if state.prelude:
                # Hidden and outside the history, so execution counts stay those students see.
                status, _out, reply = await _run_hidden(client, state.prelude, 120)
                state.prelude_status = "installed" if status == "ok" else (
                    f"failed ({status}: {_short(reply.get('ename'), 80)} {_short(reply.get('evalue'), 200)})")
            notebook_deadline[0] = time.monotonic() + float(settings.notebook_timeout_s)
            for result in state.cells:
                cell = nb.cells[result.index]
                if not _source(cell).strip():
                    result.status = "ok"
                    continue
                if notebook_deadline[0] - time.monotonic() < 1.0:
                    state.notebook_limit_hit = True
                    break                   # the rest stay "not_run"; the probe still runs
                if result.index in state.before:
                    await _run_hidden(client, state.before[result.index], 30)
                state.current, state.current_started = result.index, time.monotonic()
                limited_by = ("notebook" if notebook_deadline[0] - state.current_started < settings.cell_timeout_s
                              else "cell")
                client.begin_cell()
                client.interrupted = False
                sent[len(sent) + 1] = _source(cell)
                client.current_index = result.index
                try:
                    await client.async_execute_cell(cell, result.index)
                except CellTimeoutError:    # it ignored the interrupt: the kernel goes with it
                    result.status = "timeout"
                    result.seconds = time.monotonic() - state.current_started
                    state.outcome = "timeout"
                    return
                except DeadKernelError:
                    result.status = "kernel_died"
                    result.seconds = time.monotonic() - state.current_started
                    state.outcome = "kernel_died"
                    return
                finally:
                    client.finish_cell(cell)
                    client.current_index = None
                result.seconds = time.monotonic() - state.current_started
                reply = replies.pop(result.index, {})
                if reply.get("status") == "error":
                    kept = sum(1 for c in state.cells if c.traceback is not None)
                    result.status = "error"
                    result.error_name = _short(reply.get("ename"), 200) or "Error"
                    result.error_value = _short(reply.get("evalue"), 1000 if kept < MAX_KEPT_TRACEBACKS else 200)
                    if kept < MAX_KEPT_TRACEBACKS:   # the record stays small however many cells fail
                        result.traceback = trim_traceback(reply.get("traceback"))
                    # The kernel's count for this cell must be the grader's, or no frame is the cell's.
                    if reply.get("execution_count") == len(sent) and not reply.get("traceback_cut"):
                        result.self_check = failed_self_check(reply.get("traceback"), reply.get("ename"), sent)
                else:
                    result.status = "ok"
                if client.interrupted:      # stopped at its limit; it may have caught the interrupt
                    result.status = "timeout"
                    state.timed_out.append((result.index, limited_by))
                    if notebook_deadline[0] - time.monotonic() < 1.0:
                        state.notebook_limit_hit = True
                        break
            state.current = None
            if probe is not None:
                await _run_probe(state, client, sbx, settings, probe)
        finally:
            watchdog.cancel()
            await setup.__aexit__(None, None, None)
    finally:
        client.stop_guard()
        if client.violation:
            state.violation, state.violation_cell = client.violation, client.violation_cell
        if client.kc is not None:
            client.kc.stop_channels()
        await _shutdown(km)


async def _run_probe(state: _State, client: NotebookClient, sbx: Sandbox,
                     settings: ExecSettings, probe: ProbeRequest) -> None:
    t0 = time.monotonic()
    # Inputs appear only now, so student cells never saw them; outputs start empty.
    _clear_dir(sbx.stage_out)
    if probe.in_dir and Path(probe.in_dir).is_dir():
        shutil.copytree(probe.in_dir, sbx.stage_in, dirs_exist_ok=True)
    code = (f"import sys as _gsys\nif {PROBE_MOUNT!r} not in _gsys.path:\n"
            f"    _gsys.path.insert(0, {PROBE_MOUNT!r})\ndel _gsys\n") + probe.code
    status, _stdout, reply = await _run_hidden(client, code, float(settings.probe_timeout_s))
    error = None
    if status == "error":
        error = trim_traceback(reply.get("traceback")) or _short(
            f"{reply.get('ename')}: {reply.get('evalue')}")
    elif status == "timeout":
        error = f"the probe ran longer than {settings.probe_timeout_s:g} s"
    elif status == "kernel_died":
        error = "the kernel died while the probe ran"
        status = "error"
    state.probe = ProbeResult(status=status, seconds=time.monotonic() - t0, error=error)
    _copy_out(sbx.stage_out, Path(probe.out_dir))


async def _shutdown(km: AsyncKernelManager) -> None:
    try:
        if km.has_kernel:
            await asyncio.wait_for(km.shutdown_kernel(now=True), 15)
    except Exception:
        pass
    try:
        await asyncio.wait_for(km.cleanup_resources(), 5)
    except Exception:
        pass


def _own_signals(state: _State) -> None:
    """SIGINT/SIGTERM stop the run (nbclient's own handlers only schedule a cleanup of
    kernels it owns, so without this a Ctrl-C of the grader would be swallowed)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, state.stop.set)
        except (RuntimeError, NotImplementedError, ValueError):
            pass  # not the main thread: the caller's own handling applies


async def _main(state: _State, sbx: Sandbox, settings: ExecSettings, workdir: Path,
                probe: ProbeRequest | None) -> None:
    state.stop = asyncio.Event()
    _own_signals(state)
    task = asyncio.ensure_future(_drive(state, sbx, settings, workdir, probe))
    stopper = asyncio.ensure_future(state.stop.wait())
    try:
        # The cells keep to the notebook's limit themselves (and the probe to its own); this
        # backstop catches a kernel that stops answering between them.
        backstop = (settings.notebook_timeout_s + settings.probe_timeout_s
                    + 2 * settings.interrupt_grace_s + HIDDEN_CELLS_S)
        done, _ = await asyncio.wait({task, stopper}, timeout=backstop,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(sig)
            except (RuntimeError, NotImplementedError, ValueError):
                pass
    if task in done:
        task.result()
        return
    if state.stop.is_set():
        state.interrupted = True
        task.cancel()
        try:
            await asyncio.wait_for(task, 10)
        except BaseException:
            pass
        if state.km is not None:
            await _shutdown(state.km)
        return
    # nbclient turns a cancelled cell into DeadKernelError, so decide the outcome here.
    task.cancel()
    try:
        await asyncio.wait_for(task, 30)
    except BaseException:
        pass
    state.outcome = "notebook_timeout"
    if state.km is not None:
        await _shutdown(state.km)


def _run_coroutine(coro: Any) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    # Called from inside an event loop: run ours in a private thread.
    err: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as e:  # re-raised in the caller's thread
            err.append(e)
    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join()
    if err:
        raise err[0]


def _finish(state: _State, settings: ExecSettings, sbx: Sandbox | None) -> tuple[str, str, int | None]:
    nb, cells = state.nb, state.cells
    by_index = {c.index: c for c in cells}
    if state.outcome == "sandbox_failed":
        return "sandbox_failed", f"The notebook was not run: {state.detail}.", None
    if state.violation:
        idx = state.violation_cell
        where = f"while {_cell_label(nb, idx)} ran" if idx is not None else "while the grader's own code ran"
        return ("protocol_violation", f"{state.violation[0].upper()}{state.violation[1:]} {where}: the grader "
                "does not accept that, so it stopped the kernel, and the later cells and the checks were not run.",
                idx)
    if state.outcome == "notebook_timeout":
        idx = state.current
        if idx is not None:
            c = by_index[idx]
            c.status, c.seconds = "timeout", time.monotonic() - state.current_started
            where = f"while {_cell_label(nb, idx)} was running"
        else:
            where = "after the last cell (while the checks ran)"
        return ("timeout", f"The kernel stopped answering {where} and was stopped after the notebook's "
                f"{settings.notebook_timeout_s:g} s limit; later cells were not run.", idx)
    if state.outcome == "timeout":
        idx = state.current
        return ("timeout", f"{_cell_label(nb, idx)} ran longer than the {settings.cell_timeout_s:g} s "
                "limit per cell and did not stop when interrupted, so the kernel was stopped; later "
                "cells were not run.", idx)
    if state.timed_out or state.notebook_limit_hit:
        bits = [f"{_cell_label(nb, idx)} was interrupted when the notebook reached its "
                f"{settings.notebook_timeout_s:g} s limit" if which == "notebook" else
                f"{_cell_label(nb, idx)} reached the {settings.cell_timeout_s:g} s limit per cell and "
                "was interrupted" for idx, which in state.timed_out]
        skipped = sum(1 for c in cells if c.status == "not_run")
        if state.notebook_limit_hit:
            if not state.timed_out:
                bits.append(f"the notebook reached its {settings.notebook_timeout_s:g} s limit")
            bits.append(f"the {skipped} code cell(s) after that were not run")
        else:
            bits.append("the cells after it still ran")
        first = state.timed_out[0][0] if state.timed_out else next(
            (c.index for c in cells if c.status == "not_run"), None)
        text = "; ".join(bits)
        return "timeout", text[0].upper() + text[1:] + ".", first
    if state.outcome == "kernel_died" and state.why_stopped:
        where = _cell_label(nb, state.current) if state.current is not None else "the grader's checks"
        return ("kernel_died", f"The Python kernel was stopped while running {where}: "
                f"{state.why_stopped}; later cells were not run.", state.current)
    if state.outcome == "kernel_died":
        idx = state.current
        oom = sbx is not None and sbx.oom_kills() > 0
        why = (f"it ran out of memory (limit {settings.memory_mb} MiB)" if oom else
               "most often this means it ran out of memory, crashed, or exceeded the CPU time limit")
        return ("kernel_died", f"The Python kernel died while running {_cell_label(nb, idx)}: {why}; "
                "later cells were not run.", idx)
    errors = [c for c in cells if c.status == "error"]
    if errors:
        first = errors[0]
        more = f" ({len(errors) - 1} more cells raised errors)" if len(errors) > 1 else ""
        return ("errors", f"{_cell_label(nb, first.index)} raised {first.error_name}: "
                f"{_short(first.error_value, 200)}{more}.", first.index)
    return "completed", f"All {len(cells)} code cells ran without errors.", None


def _write_executed(nb: nbformat.NotebookNode, nb_path: Path, workdir: Path) -> Path | None:
    out_dir = workdir.resolve().parent / "executed"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / Path(nb_path).name
        if target.suffix != ".ipynb":
            target = target.with_suffix(".ipynb")
        nbformat.write(nb, str(target))
        return target
    except OSError:
        return None


def read_notebook(nb_path: Path) -> tuple[nbformat.NotebookNode | None, str]:
    """The notebook as nbformat 4, or (None, why it cannot be run). Never raises."""
    try:
        data = json.loads(Path(nb_path).read_text(encoding="utf-8"))
        # Outputs and counts are thrown away before running anyway; clearing them first
        # means a stale or malformed output, or a cell without metadata (common in notebooks
        # saved by other tools), does not make an otherwise runnable notebook "invalid".
        if isinstance(data, dict) and data.get("nbformat") == 4 and isinstance(data.get("cells"), list):
            for cell in data["cells"]:
                if isinstance(cell, dict):
                    cell.setdefault("metadata", {})
                    if cell.get("cell_type") == "code":
                        cell["outputs"], cell["execution_count"] = [], None
        nb = nbformat.reads(json.dumps(data), as_version=4)
        nbformat.validate(nb)
    # nbformat raises many types (and RecursionError) for damaged notebooks.
    except Exception as e:
        return None, f"The notebook file could not be read as a Jupyter notebook: {_short(str(e), 200)}."
    return nb, ""


def execute_notebook(nb_path: Path, workdir: Path, settings: ExecSettings, *,
                     env: dict[str, str] | None = None,
                     ro_mounts: list[tuple[Path, str]] | None = None,
                     probe: ProbeRequest | None = None,
                     prelude: str | None = None,
                     python_path: list[str] | None = None,
                     before_cells: dict[int, str] | None = None) -> NotebookRun:
    """``prelude``: grader code run in the kernel after the sandbox check and before the first
    cell (e.g. instrumentation); it sees the probe folder (/grader/probe) read-only.
    ``ro_mounts``: (host path, target) with an absolute target, or one relative to the notebook's
    folder; ``python_path``: folders beside the notebook whose modules import flat;
    ``before_cells``: grader code run hidden just before the notebook cells of those indices
    (a reseed before the given training cell, say)."""
    t0 = time.monotonic()
    workdir = Path(workdir)
    nb, why = read_notebook(nb_path)
    if nb is None:
        return NotebookRun("invalid", why, None, [], time.monotonic() - t0, {}, [], None, None)
    neutralized: list[dict] = []
    if settings.colab == "neutralize":
        nb, neutralized = colab.neutralize(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    state = _State(nb=nb, cells=[CellResult(i, "not_run", 0.0) for i, c in enumerate(nb.cells)
                                 if c.cell_type == "code"], prelude=prelude, before=dict(before_cells or {}))
    limits: dict[str, str] = {}
    sbx: Sandbox | None = None
    try:
        with Sandbox(workdir=workdir.resolve(), memory_mb=settings.memory_mb,
                     pids_max=settings.pids_max, tmp_mb=settings.tmp_mb,
                     fsize_mb=settings.fsize_mb, cpu_s=_cpu_seconds(settings),
                     env={**dict(env or {}), **kernel_env(settings.device)},
                     ro_mounts=list(ro_mounts or []), python_path=list(python_path or []),
                     gpu_nodes=list(settings.gpu_nodes), threads=settings.threads,
                     with_probe=probe is not None or bool(prelude)) as sbx:
            limits = {**sbx.limits, **time_limit_entries(settings)}
            limits["device"] = (settings.device if settings.device != "cpu" else
                                "cpu (code written for a GPU runs on the CPU)")
            limits["disk"] = (f"{settings.disk_mb} MiB and {settings.max_files} files written to disk, "
                              f"polled every {DISK_POLL_S:g} s (the kernel is killed beyond)")
            limits["messages"] = (f"{settings.max_message_mb} MB per message from the kernel (ZMQ's maximum "
                                  "message size: a larger one drops the connection, and the kernel is stopped); "
                                  f"{settings.grader_memory_mb} MB of the grader's own memory for the kernel's "
                                  f"messages, watched every {MEMORY_POLL_S * 1000:g} ms")
            limits["output"] = (f"{settings.max_output_chars} characters of text per cell, "
                                f"{TEXT_CELLS_BUDGET * settings.max_output_chars} per notebook; "
                                f"{MAX_IMAGES_PER_CELL} images per cell, {MAX_IMAGE_CHARS_TOTAL // 1_000_000} MB "
                                "of images per notebook")
            try:
                _run_coroutine(_main(state, sbx, settings, workdir, probe))
            except SandboxError:
                raise
            except Exception as e:  # keep a batch going; the run is reported as not executed
                if state.canary:   # student code had started: it broke its kernel, not the sandbox
                    state.outcome = "kernel_died"
                    state.why_stopped = (f"the kernel stopped following the Jupyter protocol "
                                         f"({type(e).__name__}: {_short(str(e), 200)})")
                else:
                    state.outcome = "sandbox_failed"
                    state.detail = f"internal error while running the kernel: {type(e).__name__}: {_short(str(e), 200)}"
            if state.interrupted:
                sbx.kill_all()
                raise KeyboardInterrupt("grading was stopped (SIGINT or SIGTERM)")
            status, message, first = _finish(state, settings, sbx)
            left = sbx.kill_all()
            if left:
                limits["leftover_processes"] = ", ".join(map(str, sorted(left)))
    except SandboxError as e:
        state.outcome, state.detail = "sandbox_failed", str(e)
        status, message, first = _finish(state, settings, None)
    if state.canary:
        limits["sandbox_check"] = state.canary
    if state.prelude_status:
        limits["prelude"] = state.prelude_status
    probe_result = state.probe
    if probe is not None and probe_result is None:
        probe_result = ProbeResult("not_run", 0.0, f"the notebook ended with status {status}")
    executed = _write_executed(nb, nb_path, workdir) if status != "sandbox_failed" else None
    return NotebookRun(status=status, message=message, first_error_cell=first, cells=state.cells,
                       seconds=time.monotonic() - t0, limits=limits, neutralized=neutralized,
                       probe=probe_result, executed_path=executed, device=settings.device)


def time_limit_entries(settings: ExecSettings) -> dict[str, str]:
    """The record's words for the time limits a run was held to."""
    out = {"cell_timeout": (f"{settings.cell_timeout_s:g} s per cell; a cell at its limit is interrupted, "
                            f"and stopped with the kernel if it still runs {settings.interrupt_grace_s:g} s later"),
           "notebook_timeout": f"{settings.notebook_timeout_s:g} s for the notebook"}
    if settings.limits_why:
        out["time_limits"] = settings.limits_why
    return out


def _cpu_seconds(settings: ExecSettings) -> int:
    """RLIMIT_CPU for the kernel: never the limit that ends a notebook before its time limit does
    (the main process, with a thread or two of torch beside it, over the whole notebook)."""
    return int(max(settings.cpu_s, 2 * (settings.notebook_timeout_s + settings.probe_timeout_s) + HIDDEN_CELLS_S))


class EnvironmentIncomplete(SandboxError):
    """A package the rubric declares for the course's environment is missing or has another version."""


def preflight(settings: ExecSettings | None = None, packages: tuple = ()) -> dict:
    """Run a trivial notebook in the sandbox; raise SandboxError unless it is isolated and works,
    and EnvironmentIncomplete unless every declared package (grader/environment.py) is importable
    there in its declared version."""
    from grader.environment import check_packages, packages_check_code, read_packages_report

    settings = settings or ExecSettings()
    for tool in ("bwrap", "prlimit"):
        if find_tool(tool) is None:
            raise SandboxError(f"{tool} is not installed; the sandbox cannot run "
                               "(apt-get install -y bubblewrap util-linux)")
    quick = dataclasses.replace(settings, cell_timeout_s=120, notebook_timeout_s=240)
    with tempfile.TemporaryDirectory(prefix="grader-preflight-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        nb_path = Path(tmp) / "preflight.ipynb"
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("import os\nprint(os.getuid(), 6 * 7)")]
        if packages:
            nb.cells.append(nbformat.v4.new_code_cell(packages_check_code(packages)))
        nbformat.write(nb, str(nb_path))
        run = execute_notebook(nb_path, work, quick)
        if run.status != "completed":
            raise SandboxError(f"sandbox preflight failed ({run.status}): {run.message}")
        found: dict[str, str] = {}
        if packages:
            out = nbformat.read(str(run.executed_path), as_version=4) if run.executed_path else None
            text = "".join(o.get("text", "") for o in (out.cells[1].outputs if out else [])
                           if o.get("output_type") == "stream")
            problems, found = check_packages(packages, read_packages_report(text))
            if problems:
                missing = " ".join(f"'{p.requirement}'" for p in packages)
                raise EnvironmentIncomplete(
                    "the course's environment is incomplete in the kernel: " + "; ".join(problems)
                    + f". Install the rubric's packages (make setup does it: {sys.executable} -m pip install {missing})")
    return {"status": run.status, "seconds": round(run.seconds, 2), "limits": run.limits, "packages": found}
