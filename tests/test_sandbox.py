"""Isolation of the sandboxed kernel, checked through real notebooks run with bwrap."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grader.execute import ExecSettings, execute_notebook
from grader.preflight import preflight
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
    for controller in ("memory", "pids", "cpu"):
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
    import grader.preflight as preflight_module
    from grader.sandbox import SandboxError
    monkeypatch.setattr(preflight_module, "find_tool", lambda name: None)
    with pytest.raises(SandboxError, match="bwrap"):
        preflight()


def test_dev_and_root_are_read_only_and_dev_shm_stops_at_its_cap(tmp_path):
    settings = ExecSettings(cell_timeout_s=60, notebook_timeout_s=120, tmp_mb=64)
    cells = [
        # /dev, the sandbox's root and /etc refuse new files; the device nodes work
        "import errno, os\nrefused = {}\n"
        "for p in ['/dev/fill', '/dev/shm/../fill', '/fill', '/etc/fill', '/home/fill', '/grader/fill']:\n"
        "    try:\n        open(p, 'wb').write(b'x' * 4096)\n        refused[p] = None\n"
        "    except OSError as e:\n        refused[p] = e.errno\n"
        "for call in (lambda: os.mkdir('/dev/d'), lambda: os.symlink('/tmp', '/dev/l'),\n"
        "             lambda: os.mknod('/dev/fifo', 0o600 | 0o010000)):\n"
        "    try:\n        call()\n        refused[str(call)] = None\n"
        "    except OSError as e:\n        refused[str(call)] = e.errno\n"
        "print(refused)\nassert all(e in (errno.EROFS, errno.EACCES, errno.EPERM) for e in refused.values()), refused\n"
        "open('/dev/null', 'wb').write(b'x' * 4096)\n"
        "assert len(open('/dev/urandom', 'rb').read(64)) == 64 and open('/dev/zero', 'rb').read(8) == bytes(8)\n"
        "fd = os.open('/dev/full', os.O_WRONLY)\ntry:\n    os.write(fd, b'x')\n    raise SystemExit('/dev/full accepted a write')\n"
        "except OSError as e:\n    assert e.errno == errno.ENOSPC\nfinally:\n    os.close(fd)\n"
        "assert sorted(os.listdir('/dev')) == sorted(['null', 'zero', 'full', 'random', 'urandom', 'tty', 'pts',\n"
        "    'ptmx', 'shm', 'fd', 'stdin', 'stdout', 'stderr', 'core']), os.listdir('/dev')",
        # /dev/shm: a capped tmpfs; writes stop with ENOSPC at the cap
        "import errno, os\nst = os.statvfs('/dev/shm')\nprint('shm size', st.f_blocks * st.f_frsize)\n"
        "assert st.f_blocks * st.f_frsize == 64 << 20\nn = 0\ntry:\n    while n < 1024:\n"
        "        with open(f'/dev/shm/fill{n}', 'wb') as fh:\n            fh.write(b'\\x07' * (1 << 20))\n"
        "        n += 1\nexcept OSError as e:\n    assert e.errno == errno.ENOSPC, e\n"
        "print('shm MiB written', n)\nassert n <= 64, n\n"
        "for name in os.listdir('/dev/shm'):\n    os.unlink('/dev/shm/' + name)",
        # what needs /dev/shm still works: shared memory, and torch's DataLoader workers
        "from multiprocessing import shared_memory\nm = shared_memory.SharedMemory(create=True, size=1 << 20)\n"
        "m.buf[:3] = b'abc'\nm.close()\nm.unlink()\n"
        "import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n"
        "ds = TensorDataset(torch.arange(64.0).reshape(32, 2))\n"
        "total = sum(b[0].sum().item() for b in DataLoader(ds, batch_size=8, num_workers=2))\n"
        "assert total == sum(range(64)), total",
    ]
    run = _run(tmp_path, cells, settings)
    assert run.status == "completed", (run.message, [c.traceback for c in run.cells])
    assert "shm MiB written" in _outputs(run, 1)
    written = int(_outputs(run, 1).split("shm MiB written")[1].split()[0])
    assert 60 <= written <= 64, written
    assert run.limits["devices"].startswith("/dev read-only") and "64 MiB" in run.limits["devices"]
    assert "read-only" in run.limits["sandbox_check"]


def _capture_sandboxes(monkeypatch) -> list:
    import grader.execute as execute
    made = []

    class Recorded(Sandbox):
        def __enter__(self):
            made.append(self)
            return super().__enter__()
    monkeypatch.setattr(execute, "Sandbox", Recorded)
    return made


def test_no_host_descriptor_reaches_the_kernel_and_its_output_is_bounded(tmp_path, monkeypatch):
    # A host log file the grader holds open without close-on-exec (as a shell redirection or a
    # careless library would), besides pytest's own capture files on fd 1 and 2.
    log = tmp_path / "host.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.set_inheritable(fd, True)
    made = _capture_sandboxes(monkeypatch)
    listing = (
        "import os, stat\nbad = []\nseen = {}\n"
        "for pid in ('self', '1'):\n    for fd in os.listdir(f'/proc/{pid}/fd'):\n"
        "        try:\n            target = os.readlink(f'/proc/{pid}/fd/{fd}')\n        except OSError:\n            continue\n"
        "        seen[f'{pid}:{fd}'] = target\n"
        "        if target.startswith('/'):\n"
        "            try:\n                a, b = os.stat(target), os.stat(f'/proc/{pid}/fd/{fd}')\n"
        "                same = (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)\n"
        "            except OSError:\n                same = False\n"
        "            if not same:\n                bad.append((pid, fd, target))\n"
        "        elif target.split(':')[0] not in ('pipe', 'socket', 'anon_inode'):\n"
        "            bad.append((pid, fd, target))\n"
        "print(seen)\nassert not bad, bad\n"
        "assert seen['self:0'] == seen['1:0'] == '/dev/null', seen\n"
        "assert seen['1:1'] == seen['1:2'] and seen['1:1'].startswith('pipe:'), seen\n"
        f"assert {str(log)!r} not in str(seen)")
    flood = ("import os\nchunk = b'y' * (1 << 20)\nfor path in ('/proc/1/fd/1', '/proc/1/fd/2'):\n"
             "    fd = os.open(path, os.O_WRONLY)\n    for _ in range(128):\n        os.write(fd, chunk)\n"
             "    os.close(fd)\nprint('wrote 256 MiB')")
    try:
        run = _run(tmp_path, [listing, flood])
    finally:
        os.close(fd)
    assert run.status == "completed", (run.message, [c.traceback for c in run.cells])
    assert "wrote 256 MiB" in _outputs(run, 1)
    assert log.stat().st_size == 0
    [sbx] = made
    assert sbx.output_bytes >= 256 << 20
    kept = sbx.launch_log(limit=1 << 30)
    assert len(kept) < 24 << 10 and "bytes not kept" in kept
    assert "no host descriptors" in run.limits["sandbox_check"]
    assert run.limits["kernel_output"].startswith("stdin /dev/null")


BUSY = ("import os, time\n"
        "def burn(seconds):\n    end = time.monotonic() + seconds\n    while time.monotonic() < end:\n        pass\n"
        "t0, c0 = time.monotonic(), os.times()\nkids = []\nfor _ in range(4):\n    pid = os.fork()\n"
        "    if pid == 0:\n        burn(2.0)\n        os._exit(0)\n    kids.append(pid)\n"
        "for pid in kids:\n    os.waitpid(pid, 0)\n"
        "c1, wall = os.times(), time.monotonic() - t0\n"
        "cpu = (c1.children_user + c1.children_system) - (c0.children_user + c0.children_system)\n"
        "print(f'cpu {cpu:.2f} s wall {wall:.2f} s ratio {cpu / wall:.2f}')\n"
        "assert cpu / wall <= 1.3, (cpu, wall)")


def test_four_busy_processes_share_one_core_with_one_thread(tmp_path):
    run = _run(tmp_path, [BUSY], ExecSettings(cell_timeout_s=30, notebook_timeout_s=120, threads=1))
    if not run.limits["cpu_quota"].startswith("cgroup"):
        pytest.skip("no writable cgroup v1 cpu controller: " + run.limits["cpu_quota"])
    assert "cpu.cfs_quota_us=100000 per cpu.cfs_period_us=100000" in run.limits["cpu_quota"]
    assert run.status == "completed", (run.message, _outputs(run, 0), run.cells[0].traceback)


def test_cpu_group_matches_threads_and_is_removed(tmp_path):
    with Sandbox(workdir=tmp_path, memory_mb=2048, pids_max=64, tmp_mb=64, fsize_mb=64, cpu_s=60,
                 threads=2) as sbx:
        group = sbx.cpu_cg
        if group is None:
            assert sbx.limits["cpu_quota"].startswith("none (no writable cgroup v1 cpu controller)")
            pytest.skip("no writable cgroup v1 cpu controller")
        assert (group / "cpu.cfs_period_us").read_text().strip() == "100000"
        assert (group / "cpu.cfs_quota_us").read_text().strip() == "200000"
        assert "cpu.cfs_quota_us=200000" in sbx.limits["cpu_quota"]
        assert str(group / "cgroup.procs") in sbx.launcher.read_text()
    assert not group.exists()


def test_cpu_quota_falls_back_and_says_so(tmp_path, monkeypatch):
    import grader.procs as procs
    real = procs.own_v1_group
    monkeypatch.setattr(procs, "own_v1_group", lambda c: None if c == "cpu" else real(c))
    with Sandbox(workdir=tmp_path, memory_mb=2048, pids_max=64, tmp_mb=64, fsize_mb=64, cpu_s=60) as sbx:
        assert sbx.cpu_cg is None
        assert sbx.limits["cpu_quota"].startswith("none (no writable cgroup v1 cpu controller)")
        assert "cpu.cfs" not in sbx.launcher.read_text()


def test_a_node_bound_for_the_gpu_stays_usable_in_the_read_only_dev(tmp_path):
    # No GPU here: /dev/vsock stands in for /dev/nvidiaN, bound the same way (--dev-bind).
    node = "/dev/vsock"
    if not os.path.exists(node):
        pytest.skip(f"{node} is missing")
    code = (f"import errno, os\nfd = os.open({node!r}, os.O_RDWR)\nos.close(fd)\n"
            "try:\n    open('/dev/nvidia-extra', 'w')\n    raise SystemExit('/dev writable')\n"
            "except OSError as e:\n    assert e.errno == errno.EROFS, e")
    run = _run(tmp_path, [code], ExecSettings(cell_timeout_s=30, notebook_timeout_s=120, gpu_nodes=(node,)))
    assert run.status == "completed", (run.message, run.cells[0].traceback)
    assert "and vsock" in run.limits["devices"]
