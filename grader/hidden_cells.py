"""The grader's own code in the student's kernel, out of reach of the notebook's hooks."""
from __future__ import annotations

import ast
import queue
import time

from nbclient import NotebookClient

from grader.kernel_messages import bounded_text


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
        return {"status": "error", "ename": bounded_text(reply.get("ename"), 200) or "Error",
                "evalue": bounded_text(reply.get("evalue"), 5000), "traceback": []}
    value = (reply.get("user_expressions") or {}).get(_HIDDEN_KEY)
    if not isinstance(value, dict):
        return {"status": "error", "ename": "Error", "evalue": "the hidden code did not report back",
                "traceback": []}
    if value.get("status") != "ok":
        tb = value.get("traceback")
        return {"status": "error", "ename": bounded_text(value.get("ename"), 200) or "Error",
                "evalue": bounded_text(value.get("evalue"), 5000),
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


async def run_hidden(client: NotebookClient, code: str, timeout: float,
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
