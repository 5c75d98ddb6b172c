"""Execute one student notebook in the sandbox, cell by cell, and report what happened."""
from __future__ import annotations

import asyncio
import atexit
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from grader import colab, notebook_file
from grader.devices import kernel_env
from grader.environment import install_code
from grader.sandbox import KERNEL_NAME, PROBE_MOUNT, Sandbox, SandboxError
from grader.hidden_cells import run_hidden
from grader.kernel_client import (MAX_IMAGE_CHARS_TOTAL, MAX_IMAGES_PER_CELL, MEMORY_POLL_S, TEXT_CELLS_BUDGET,
                                  BoundedClient, cell_source)
from grader.kernel_messages import clean_reply
from grader.kernel_files import DISK_POLL_S, clear_dir, copy_probe_answers, watch_disk
from grader.run_outcome import outcome
from grader.run_types import CellResult, ExecSettings, NotebookRun, ProbeRequest, ProbeResult, RunState
from grader.selfcheck import failed_self_check
from grader.text_safety import one_line, trim_traceback

MAX_KEPT_TRACEBACKS = 20             # error cells whose traceback goes into the record
HIDDEN_CELLS_S = 300                 # kernel start, sandbox check, environment and prelude, at most

__all__ = ["ExecSettings", "CellResult", "ProbeRequest", "ProbeResult", "NotebookRun",
           "SandboxError", "execute_notebook", "read_notebook"]

# ---------------------------------------------------------------- the run

async def _drive(state: RunState, sbx: Sandbox, settings: ExecSettings, workdir: Path,
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

    client = BoundedClient(nb, km, settings.max_output_chars, grace_s=settings.interrupt_grace_s,
                            timeout_func=cell_limit, allow_errors=True, interrupt_on_timeout=False,
                            startup_timeout=60, iopub_timeout=5, raise_on_iopub_timeout=False,
                            coalesce_streams=True, record_timing=False,
                            resources={"metadata": {"path": str(workdir)}},
                            max_message_bytes=int(settings.max_message_mb) << 20,
                            memory_budget_bytes=int(settings.grader_memory_mb) << 20)
    client.kill = lambda: sbx.kill_all(5.0)
    replies: dict[int, dict] = {}
    client.on_cell_executed = lambda cell, cell_index, execute_reply: replies.__setitem__(
        cell_index, clean_reply(execute_reply.get("content") if execute_reply else None))
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
            state.detail = f"the sandboxed kernel did not start ({one_line(str(e), 200)})" + (
                f"; launcher said: {one_line(log, 400)}" if log else "")
            return
        _own_signals(state)  # nbclient's setup just replaced them
        watchdog = asyncio.ensure_future(watch_disk(state, sbx, settings, workdir))
        try:
            proc = getattr(km.provisioner, "process", None)
            await asyncio.to_thread(sbx.note_started, getattr(proc, "pid", None))
            port = sbx.open_listener()
            status, stdout, _ = await run_hidden(client, sbx.canary_code(port), 30)
            ok, summary, _report = sbx.check_canary(stdout)
            if status != "ok" or not ok:
                state.outcome = "sandbox_failed"
                state.detail = f"sandbox check failed: {summary if not ok else status}"
                return
            state.canary = summary
            # The course environment (google.colab, torchvision, tqdm, GPU code on the CPU).
            status, _out, reply = await run_hidden(
                client, install_code(cuda_fallback=settings.device == "cpu"), 60)
            if status != "ok":
                state.outcome = "sandbox_failed"
                state.detail = (f"the course environment could not be set up in the kernel ({status}: "
                                f"{one_line(reply.get('ename'), 80)} {one_line(reply.get('evalue'), 200)})")
                return
            if state.prelude:
                # Hidden and outside the history, so execution counts stay those students see.
                status, _out, reply = await run_hidden(client, state.prelude, 120)
                state.prelude_status = "installed" if status == "ok" else (
                    f"failed ({status}: {one_line(reply.get('ename'), 80)} {one_line(reply.get('evalue'), 200)})")
            notebook_deadline[0] = time.monotonic() + float(settings.notebook_timeout_s)
            for result in state.cells:
                cell = nb.cells[result.index]
                if not cell_source(cell).strip():
                    result.status = "ok"
                    continue
                if notebook_deadline[0] - time.monotonic() < 1.0:
                    state.notebook_limit_hit = True
                    break                   # the rest stay "not_run"; the probe still runs
                if result.index in state.before:
                    await run_hidden(client, state.before[result.index], 30)
                state.current, state.current_started = result.index, time.monotonic()
                limited_by = ("notebook" if notebook_deadline[0] - state.current_started < settings.cell_timeout_s
                              else "cell")
                client.begin_cell()
                client.interrupted = False
                sent[len(sent) + 1] = cell_source(cell)
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
                    result.error_name = one_line(reply.get("ename"), 200) or "Error"
                    result.error_value = one_line(reply.get("evalue"), 1000 if kept < MAX_KEPT_TRACEBACKS else 200)
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


async def _run_probe(state: RunState, client: NotebookClient, sbx: Sandbox,
                     settings: ExecSettings, probe: ProbeRequest) -> None:
    t0 = time.monotonic()
    # Inputs appear only now, so student cells never saw them; outputs start empty.
    clear_dir(sbx.stage_out)
    if probe.in_dir and Path(probe.in_dir).is_dir():
        shutil.copytree(probe.in_dir, sbx.stage_in, dirs_exist_ok=True)
    code = (f"import sys as _gsys\nif {PROBE_MOUNT!r} not in _gsys.path:\n"
            f"    _gsys.path.insert(0, {PROBE_MOUNT!r})\ndel _gsys\n") + probe.code
    status, _stdout, reply = await run_hidden(client, code, float(settings.probe_timeout_s))
    error = None
    if status == "error":
        error = trim_traceback(reply.get("traceback")) or one_line(
            f"{reply.get('ename')}: {reply.get('evalue')}")
    elif status == "timeout":
        error = f"the probe ran longer than {settings.probe_timeout_s:g} s"
    elif status == "kernel_died":
        error = "the kernel died while the probe ran"
        status = "error"
    state.probe = ProbeResult(status=status, seconds=time.monotonic() - t0, error=error)
    copy_probe_answers(sbx.stage_out, Path(probe.out_dir))


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


def _own_signals(state: RunState) -> None:
    """SIGINT/SIGTERM stop the run (nbclient's own handlers only schedule a cleanup of
    kernels it owns, so without this a Ctrl-C of the grader would be swallowed)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, state.stop.set)
        except (RuntimeError, NotImplementedError, ValueError):
            pass  # not the main thread: the caller's own handling applies


async def _watch(outside: threading.Event, stop: asyncio.Event) -> None:
    while not outside.is_set():
        await asyncio.sleep(0.1)
    stop.set()


async def _main(state: RunState, sbx: Sandbox, settings: ExecSettings, workdir: Path,
                probe: ProbeRequest | None) -> None:
    state.stop = asyncio.Event()
    _own_signals(state)
    watcher = asyncio.ensure_future(_watch(state.external_stop, state.stop)) if state.external_stop else None
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
        if watcher is not None:
            watcher.cancel()
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
    """The notebook as nbformat 4, its outputs dropped, or (None, why it cannot be run); the
    rules are grader/notebook_file.py's. Never raises."""
    got = notebook_file.read(nb_path, outputs=False)
    why = got.problem or got.invalid
    if got.nb is None or why:
        return None, f"The notebook file could not be read as a Jupyter notebook: {one_line(why, 200)}."
    return got.nb, ""


def execute_notebook(nb_path: Path, workdir: Path, settings: ExecSettings, *,
                     env: dict[str, str] | None = None,
                     ro_mounts: list[tuple[Path, str]] | None = None,
                     probe: ProbeRequest | None = None,
                     prelude: str | None = None,
                     python_path: list[str] | None = None,
                     before_cells: dict[int, str] | None = None,
                     stop: threading.Event | None = None) -> NotebookRun:
    """``prelude``: grader code run in the kernel after the sandbox check and before the first
    cell (e.g. instrumentation); it sees the probe folder (/grader/probe) read-only.
    ``ro_mounts``: (host path, target) with an absolute target, or one relative to the notebook's
    folder; ``python_path``: folders beside the notebook whose modules import flat;
    ``before_cells``: grader code run hidden just before the notebook cells of those indices
    (a reseed before the given training cell, say); ``stop``: set from another thread, it stops
    the run as SIGINT does (KeyboardInterrupt), for a run outside the main thread."""
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
    state = RunState(nb=nb, cells=[CellResult(i, "not_run", 0.0) for i, c in enumerate(nb.cells)
                                 if c.cell_type == "code"], prelude=prelude, before=dict(before_cells or {}),
                     external_stop=stop)
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
                                         f"({type(e).__name__}: {one_line(str(e), 200)})")
                else:
                    state.outcome = "sandbox_failed"
                    state.detail = f"internal error while running the kernel: {type(e).__name__}: {one_line(str(e), 200)}"
            if state.interrupted:
                sbx.kill_all()
                raise KeyboardInterrupt("grading was stopped (SIGINT or SIGTERM)")
            status, message, first = outcome(state, settings, sbx)
            left = sbx.kill_all()
            if left:
                limits["leftover_processes"] = ", ".join(map(str, sorted(left)))
    except SandboxError as e:
        state.outcome, state.detail = "sandbox_failed", str(e)
        status, message, first = outcome(state, settings, None)
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


