"""Isolation of the sandboxed kernel, checked through real notebooks run with bwrap."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grader.execute import ExecSettings, execute_notebook, preflight
from grader.sandbox import REPO_ROOT, Sandbox

FAST = ExecSettings(cell_timeout_s=30, notebook_timeout_s=120)


def _run(tmp_path, sources, settings=FAST, **kw):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    return execute_notebook(path, work, settings, **kw)


def _outputs(run, i):
    nb = nbformat.read(str(run.executed_path), as_version=4)
    return "".join(o.get("text", "") for o in nb.cells[i].outputs)


def test_network_blocked_to_host_loopback_and_outside(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    code = f"""
import socket, json
res = {{}}
for host, port in [("127.0.0.1", {port}), ("1.1.1.1", 443), ("pypi.org", 443)]:
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((host, port)); res[host] = "connected"
    except OSError as e:
        res[host] = type(e).__name__ + ": " + str(e)
    finally:
        s.close()
print(json.dumps(res))
assert not any(v == "connected" for v in res.values()), res
"""
    try:
        run = _run(tmp_path, [code])
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()
    assert run.status == "completed", run.message
    res = json.loads(_outputs(run, 0))
    assert set(res) == {"127.0.0.1", "1.1.1.1", "pypi.org"}
    assert run.limits["network"].startswith("none")


def test_host_files_hidden_and_writes_stay_inside(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("answer key")
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    repo_target = REPO_ROOT / "sandbox-escape-test.txt"
    cells = [
        # uid and capabilities
        "import os\nassert os.getuid() == 65534 and os.getgid() == 65534\n"
        "cap = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0]\n"
        "assert int(cap.split()[1], 16) == 0, cap",
        # reads outside the work dir
        f"import os\nfor p in [{str(REPO_ROOT / 'pyproject.toml')!r}, {str(secret)!r}, "
        f"{str(REPO_ROOT / 'rubrics')!r}, '/root/.bashrc', '/etc/shadow']:\n"
        "    assert not os.path.exists(p), p\n"
        f"try:\n    open({str(REPO_ROOT / 'pyproject.toml')!r}).read()\n    raise SystemExit('read')\n"
        "except FileNotFoundError:\n    pass\n"
        "print(sorted(os.listdir('/root')))",
        # writes outside the work dir never reach the host; the venv is read-only
        "import os, sys\nwrote = []\n"
        f"for p in [{str(outside_dir / 'x.txt')!r}, {str(repo_target)!r}]:\n"
        "    try:\n        os.makedirs(os.path.dirname(p), exist_ok=True)\n"
        "        open(p, 'w').write('escape')\n        wrote.append(p)\n"
        "    except OSError:\n        pass\n"
        "try:\n    open(os.path.join(sys.prefix, 'escape.txt'), 'w')\n    raise SystemExit('venv writable')\n"
        "except OSError:\n    pass\nprint(wrote)",
        "open('inside.txt', 'w').write('ok')",
    ]
    run = _run(tmp_path, cells)
    assert run.status == "completed", (run.message, [c.traceback for c in run.cells])
    assert not (outside_dir / "x.txt").exists()
    assert not repo_target.exists()
    assert not (Path(sys.prefix) / "escape.txt").exists()
    assert (tmp_path / "work" / "inside.txt").read_text() == "ok"
    assert ".bashrc" not in _outputs(run, 1)
    assert run.limits["sandbox_check"].startswith("passed")


def test_canary_detects_an_unsandboxed_interpreter(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    with Sandbox(workdir=work, memory_mb=4096, pids_max=64, tmp_mb=64, fsize_mb=64, cpu_s=60) as sbx:
        port = sbx.open_listener()
        out = subprocess.run([sys.executable, "-c", sbx.canary_code(port)], capture_output=True,
                             text=True, timeout=60, cwd=work).stdout
        ok, summary, report = sbx.check_canary(out)
    assert not ok
    assert report["uid"] == os.getuid() != 65534
    assert report["tcp_host_listener"] is True
    assert str(REPO_ROOT / "pyproject.toml") in report["visible"]
    assert "uid" in summary and "TCP" in summary


def test_preflight_passes_here():
    info = preflight()
    assert info["status"] == "completed"
    assert info["limits"]["sandbox_check"].startswith("passed")


def test_cgroups_and_private_dirs_are_removed_after_a_run(tmp_path):
    run = _run(tmp_path, ["import sys\nprint(sys.argv[sys.argv.index('-f') + 1])"])
    assert run.status == "completed"
    conn_file = Path(_outputs(run, 0).strip())
    assert conn_file.is_absolute() and conn_file.parts[1] == "tmp"
    assert not conn_file.parent.parent.exists()       # the private dir is gone
    for controller in ("memory", "pids"):
        line = [l for l in Path("/proc/self/cgroup").read_text().splitlines()
                if controller in l.split(":")[1].split(",")]
        if line:
            group = Path("/sys/fs/cgroup") / controller / line[0].split(":", 2)[2].lstrip("/")
            if group.is_dir():
                assert not [p for p in os.listdir(group) if p.startswith(f"grader_{os.getpid()}_")]


def _fake_tool(monkeypatch, tmp_path, script):
    import grader.sandbox as sandbox
    fake = tmp_path / "fake-bwrap"
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(0o755)
    real = sandbox.find_tool
    monkeypatch.setattr(sandbox, "find_tool", lambda name: str(fake) if name == "bwrap" else real(name))


def test_unsandboxed_kernel_is_refused_before_student_code(tmp_path, monkeypatch):
    # A "bwrap" that drops every option and runs the kernel directly on the host.
    _fake_tool(monkeypatch, tmp_path, 'while [ "$1" != "--" ]; do shift; done; shift; exec "$@"\n')
    marker = tmp_path / "student-code-ran"
    run = _run(tmp_path, [f"open({str(marker)!r}, 'w').close()"])
    assert run.status == "sandbox_failed" and not run.executable()
    assert "sandbox check failed" in run.message and "uid" in run.message
    assert run.cells[0].status == "not_run"
    assert not marker.exists()
    assert run.executed_path is None


def test_kernel_that_cannot_start_is_sandbox_failed(tmp_path, monkeypatch):
    _fake_tool(monkeypatch, tmp_path, "echo 'bwrap: simulated setup failure' >&2; exit 1\n")
    run = _run(tmp_path, ["print(1)"])
    assert run.status == "sandbox_failed"
    assert "did not start" in run.message and "simulated setup failure" in run.message


def test_preflight_refuses_without_bwrap(monkeypatch):
    import grader.execute as execute
    from grader.sandbox import SandboxError
    monkeypatch.setattr(execute, "find_tool", lambda name: None)
    with pytest.raises(SandboxError, match="bwrap"):
        preflight()
