"""The grader's notebook client: what the kernel sends is kept small, in transit and once kept."""
from __future__ import annotations

import asyncio
import collections
import queue
import threading
import time
from typing import Any

import nbformat
import zmq
import zmq.utils.monitor
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from grader.kernel_messages import clean_message, json_size, limit_context, limited_client_class, mb, rss_bytes
from grader.run_types import GRADER_MEMORY_MB, MAX_MESSAGE_MB


MAX_IMAGES_PER_CELL = 50
MAX_IMAGE_CHARS = 4_000_000          # base64 characters of one image
MAX_IMAGE_CHARS_TOTAL = 20_000_000   # base64 characters of all images kept from one notebook
TEXT_CELLS_BUDGET = 50               # text kept from one notebook: this many cells' worth
MEMORY_POLL_S = 0.01
MAX_OUTPUTS = 10_000                 # outputs kept from one notebook
MAX_OUTPUTS_PER_CELL = 1000
MAX_ERRORS_PER_CELL = 3


# ---------------------------------------------------------------- helpers

def cell_label(nb: nbformat.NotebookNode, index: int) -> str:
    code_no = sum(1 for c in nb.cells[: index + 1] if c.cell_type == "code")
    return f"code cell {code_no} (cell {index + 1} of the notebook)"


def cell_source(cell: nbformat.NotebookNode) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


class BoundedClient(NotebookClient):
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
        limit_context(km.context, self.max_message_bytes)
        km.client_factory = limited_client_class(self.max_message_bytes)
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
        baseline = rss_bytes()
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
                        f"the notebook sent a message larger than {mb(self.max_message_bytes)} to the "
                        f"grader (on the kernel's {channel} channel)", cell):
                    await asyncio.to_thread(self._stop_kernel)
                return
        except (asyncio.CancelledError, zmq.ZMQError):
            return

    def _watch_memory(self, baseline: int) -> None:
        while not self._memory_stop.wait(MEMORY_POLL_S):
            rss = rss_bytes()
            if rss is not None and rss - baseline > self.memory_budget_bytes:
                if self._violated(f"the notebook's messages took more than {mb(self.memory_budget_bytes)} "
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
        clean = clean_message(msg)
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
                size = json_size(value)
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


