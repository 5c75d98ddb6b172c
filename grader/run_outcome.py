"""How a run ended, in the words the record and the student's feedback use: (status, message,
the cell it points at)."""
from __future__ import annotations

import time

from grader.kernel_client import cell_label
from grader.text_safety import one_line
from grader.run_types import ExecSettings, RunState
from grader.sandbox import Sandbox


def outcome(state: RunState, settings: ExecSettings, sbx: Sandbox | None) -> tuple[str, str, int | None]:
    nb, cells = state.nb, state.cells
    by_index = {c.index: c for c in cells}
    if state.outcome == "sandbox_failed":
        return "sandbox_failed", f"The notebook was not run: {state.detail}.", None
    if state.violation:
        idx = state.violation_cell
        where = f"while {cell_label(nb, idx)} ran" if idx is not None else "while the grader's own code ran"
        return ("protocol_violation", f"{state.violation[0].upper()}{state.violation[1:]} {where}: the grader "
                "does not accept that, so it stopped the kernel, and the later cells and the checks were not run.",
                idx)
    if state.outcome == "notebook_timeout":
        idx = state.current
        if idx is not None:
            c = by_index[idx]
            c.status, c.seconds = "timeout", time.monotonic() - state.current_started
            where = f"while {cell_label(nb, idx)} was running"
        else:
            where = "after the last cell (while the checks ran)"
        return ("timeout", f"The kernel stopped answering {where} and was stopped after the notebook's "
                f"{settings.notebook_timeout_s:g} s limit; later cells were not run.", idx)
    if state.outcome == "timeout":
        idx = state.current
        return ("timeout", f"{cell_label(nb, idx)} ran longer than the {settings.cell_timeout_s:g} s "
                "limit per cell and did not stop when interrupted, so the kernel was stopped; later "
                "cells were not run.", idx)
    if state.timed_out or state.notebook_limit_hit:
        bits = [f"{cell_label(nb, idx)} was interrupted when the notebook reached its "
                f"{settings.notebook_timeout_s:g} s limit" if which == "notebook" else
                f"{cell_label(nb, idx)} reached the {settings.cell_timeout_s:g} s limit per cell and "
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
        where = cell_label(nb, state.current) if state.current is not None else "the grader's checks"
        return ("kernel_died", f"The Python kernel was stopped while running {where}: "
                f"{state.why_stopped}; later cells were not run.", state.current)
    if state.outcome == "kernel_died":
        idx = state.current
        oom = sbx is not None and sbx.oom_kills() > 0
        why = (f"it ran out of memory (limit {settings.memory_mb} MiB)" if oom else
               "most often this means it ran out of memory, crashed, or exceeded the CPU time limit")
        return ("kernel_died", f"The Python kernel died while running {cell_label(nb, idx)}: {why}; "
                "later cells were not run.", idx)
    errors = [c for c in cells if c.status == "error"]
    if errors:
        first = errors[0]
        more = f" ({len(errors) - 1} more cells raised errors)" if len(errors) > 1 else ""
        return ("errors", f"{cell_label(nb, first.index)} raised {first.error_name}: "
                f"{one_line(first.error_value, 200)}{more}.", first.index)
    return "completed", f"All {len(cells)} code cells ran without errors.", None
