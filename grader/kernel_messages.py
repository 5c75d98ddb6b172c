"""What the kernel sends, made small before the grader keeps it: each message rebuilt from the
fields the grader uses, each of bounded size; the sockets' maximum message size; the grader's own
memory, read for the watch on it."""
from __future__ import annotations

import json
import os
from typing import Any

import zmq
import zmq.utils.monitor
from jupyter_client.asynchronous import AsyncKernelClient




MAX_TRACEBACK_LINES = 200
CLIENT_RCVHWM = 4                    # messages queued per socket before the kernel must wait
MAX_MIME_KEYS = 20
MAX_METADATA_CHARS = 10_000
MAX_REPLY_CHUNKS = 2000             # traceback chunks of an execute reply that are read

KEPT_MESSAGES = frozenset({"status", "execute_input", "clear_output", "stream", "display_data",
                            "execute_result", "update_display_data", "error"})


def bounded_text(value: Any, n: int) -> str:
    return value[:n] if isinstance(value, str) else ""


def json_size(value: Any) -> int:
    try:
        return len(json.dumps(value))
    except (TypeError, ValueError, RecursionError):
        return 1 << 62


def mb(n: int) -> str:
    return f"{n / 2**20:g} MB"


def clean_message(msg: dict) -> dict | None:
    """An iopub message as the grader uses it, or None for one it does not keep (widgets, unknown
    types): rebuilt from known fields only, each of a bounded size or type, so what the kernel
    adds (huge metadata, names, counts, buffers) is not kept."""
    msg_type = msg.get("msg_type")
    content = msg.get("content")
    if msg_type not in KEPT_MESSAGES or not isinstance(content, dict):
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
        out.update(ename=bounded_text(content.get("ename"), 200), evalue=bounded_text(content.get("evalue"), 5000),
                   traceback=[line[:5000] for line in tb])
    elif msg_type != "execute_input":   # display_data, execute_result, update_display_data
        data = content.get("data")
        out["data"] = ({k: v for k, v in list(data.items())[:MAX_MIME_KEYS] if isinstance(k, str) and len(k) <= 100}
                       if isinstance(data, dict) else {})
        meta = content.get("metadata")
        out["metadata"] = meta if isinstance(meta, dict) and json_size(meta) <= MAX_METADATA_CHARS else {}
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
            "header": {"msg_type": msg_type, "msg_id": bounded_text(msg_id, 200)},
            "parent_header": {"msg_id": parent.get("msg_id")} if isinstance(parent, dict) else {}}


def clean_reply(content: Any) -> dict:
    """What the grader reads of a cell's execute_reply."""
    if not isinstance(content, dict):
        return {}
    tb = content.get("traceback")
    tb = [line[:20000] for line in tb if isinstance(line, str)] if isinstance(tb, list) else []
    cut = len(tb) > MAX_REPLY_CHUNKS
    if cut:
        tb = tb[:100] + ["..."] + tb[-(MAX_REPLY_CHUNKS - 101):]
    count = content.get("execution_count")
    return {"status": bounded_text(content.get("status"), 20), "ename": bounded_text(content.get("ename"), 1000),
            "evalue": bounded_text(content.get("evalue"), 20000), "traceback": tb, "traceback_cut": cut,
            "execution_count": count if type(count) is int else None}


def limit_context(ctx: Any, max_bytes: int) -> None:
    """Sockets made from ``ctx`` from now on read no message frame beyond ``max_bytes`` (ZMQ
    checks the size before reading and drops the connection of the peer that sent it) and
    queue few messages before the sender must wait."""
    ctx.setsockopt(zmq.MAXMSGSIZE, int(max_bytes))
    ctx.setsockopt(zmq.RCVHWM, CLIENT_RCVHWM)


def limited_client_class(max_bytes: int) -> type:
    class LimitedKernelClient(AsyncKernelClient):
        def _context_default(self) -> Any:
            ctx = super()._context_default()
            limit_context(ctx, max_bytes)
            return ctx
    return LimitedKernelClient


try:
    _PAGE = os.sysconf("SC_PAGE_SIZE")
except (ValueError, OSError, AttributeError):
    _PAGE = 4096


def rss_bytes() -> int | None:
    """The grader's resident memory now."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None
