"""The bubblewrap sandbox that student kernels run in.

A `Sandbox` owns one kernel's private resources: a short directory under /tmp
(connection file and IPC sockets, bound into the sandbox), a kernel spec whose
argv is a launcher written at run time (absolute paths differ between clones),
cgroup v1 children for memory and pids when the host allows it, and the kill
logic that makes sure no process of the sandbox outlives the run.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_hex

SANDBOX_UID = 65534
SANDBOX_HOSTNAME = "sandbox"
WORK_MOUNT = "/home/student/work"
PROBE_MOUNT = "/grader/probe"
IN_MOUNT = "/grader/in"
OUT_MOUNT = "/grader/out"
KERNEL_NAME = "grader-sandbox"
PROBE_DIR = Path(__file__).resolve().parent / "probe"
ENV_DIR = Path(__file__).resolve().parent / "kernel_env"     # the course environment (grader/environment.py)
ENV_MOUNT = "/grader/env"
COLAB_CWD = "/content"          # Colab's working folder: absolute /content/... paths reach the work folder
REPO_ROOT = Path(__file__).resolve().parents[1]
CANARY_MARK = "__GRADER_CANARY__"
# Inside an ipykernel, RLIMIT_AS below ~2 GiB breaks `import torch` (measured).
MIN_AS_MIB = 2048
CGROUP_ROOT = Path("/sys/fs/cgroup")

_ETC_FILES = ["/etc/ld.so.cache", "/etc/passwd", "/etc/group", "/etc/localtime"]
_ETC_DIRS_TRY = ["/etc/ssl", "/etc/fonts", "/etc/alternatives"]


class SandboxError(Exception):
    """The sandbox cannot be set up or does not isolate the kernel."""


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/bin", "/bin", "/usr/sbin"):
        if os.access(f"{d}/{name}", os.X_OK):
            return f"{d}/{name}"
    return None


def _mib(n_bytes: int) -> int:
    return n_bytes >> 20


# ---------------------------------------------------------------- cgroups v1

def _own_v1_group(controller: str) -> Path | None:
    """Directory of this process's cgroup v1 group for `controller`, if writable."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3 or controller not in parts[1].split(","):
            continue
        base = CGROUP_ROOT / controller
        if not base.is_dir():
            return None
        path = base / parts[2].lstrip("/")
        if path.is_dir() and os.access(path, os.W_OK):
            return path
    return None


def _remove_stale(parent: Path) -> None:
    """Remove empty groups left behind by a grader that was killed (its pid is gone)."""
    for group in parent.glob("grader_*_*"):
        pid = group.name.split("_")[1]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}") and not _cgroup_pids(group):
            try:
                group.rmdir()
            except OSError:
                pass


def _make_child(parent: Path | None, name: str, settings: dict[str, str]) -> Path | None:
    if parent is None:
        return None
    _remove_stale(parent)
    child = parent / name
    try:
        child.mkdir()
    except OSError:
        return None
    try:
        for key, value in settings.items():
            target = child / key
            if target.exists():
                target.write_text(value)
            elif not key.startswith("memory.memsw"):
                raise OSError(f"{target} missing")
        return child
    except OSError:
        _remove_cgroup(child)
        return None


def _cgroup_pids(group: Path | None) -> set[int]:
    if group is None:
        return set()
    try:
        return {int(x) for x in (group / "cgroup.procs").read_text().split()}
    except (OSError, ValueError):
        return set()


def _remove_cgroup(group: Path | None) -> bool:
    if group is None:
        return True
    for _ in range(50):
        try:
            group.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            time.sleep(0.05)
    return False


# ---------------------------------------------------------------- processes

def _proc_state(pid: int) -> str | None:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat_line.rsplit(")", 1)[-1].split()[0]


def _children_of(pid: int) -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and _parent_of(int(e)) == pid]


def _parent_of(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _members_of_ns(ns: str) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _pid_ns(int(entry)) == ns:
            found.add(int(entry))
    return found


def _alive(pids: set[int]) -> set[int]:
    return {p for p in pids if _proc_state(p) not in (None, "Z", "X")}


# ---------------------------------------------------------------- sandbox

@dataclass
class Sandbox:
    """Per-kernel sandbox resources. Use as a context manager."""

    workdir: Path
    memory_mb: int
    pids_max: int
    tmp_mb: int
    fsize_mb: int
    cpu_s: int
    env: dict[str, str] = field(default_factory=dict)
    ro_mounts: list[tuple[Path, str]] = field(default_factory=list)   # target relative: inside the work folder
    with_probe: bool = False
    python_path: list[str] = field(default_factory=list)   # folders under the work folder, importable flat
    gpu_nodes: list[str] = field(default_factory=list)     # /dev nodes of the GPU this kernel gets

    private: Path = field(init=False)
    conn_dir: Path = field(init=False)
    spec_dir: Path = field(init=False)
    launcher: Path = field(init=False)
    log_path: Path = field(init=False)
    stage_in: Path = field(init=False)
    stage_out: Path = field(init=False)
    mem_cg: Path | None = field(init=False, default=None)
    pids_cg: Path | None = field(init=False, default=None)
    limits: dict[str, str] = field(init=False, default_factory=dict)
    as_mib: int | None = field(init=False, default=None)
    _outer_pid: int | None = field(init=False, default=None)
    _ns: str | None = field(init=False, default=None)
    _listener: socket.socket | None = field(init=False, default=None)

    # -- setup / teardown

    def __enter__(self) -> "Sandbox":
        bwrap, prlimit = find_tool("bwrap"), find_tool("prlimit")
        if bwrap is None:
            raise SandboxError("bubblewrap (bwrap) is not installed: apt-get install -y bubblewrap")
        if prlimit is None:
            raise SandboxError("prlimit (util-linux) is not installed")
        self.private = Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))
        try:
            self.conn_dir = self.private / "k"
            self.spec_dir = self.private / "spec"
            self.stage_in = self.private / "in"
            self.stage_out = self.private / "out"
            for d in (self.conn_dir, self.spec_dir / KERNEL_NAME, self.stage_in, self.stage_out):
                d.mkdir(parents=True)
            self.launcher = self.spec_dir / "launch"
            self.log_path = self.private / "launch.log"
            self._setup_cgroups()
            self._write_launcher(bwrap, prlimit)
            self._write_kernelspec()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def _setup_cgroups(self) -> None:
        name = f"grader_{os.getpid()}_{token_hex(4)}"
        limit = str(self.memory_mb << 20)
        self.mem_cg = _make_child(_own_v1_group("memory"), name, {
            "memory.limit_in_bytes": limit, "memory.memsw.limit_in_bytes": limit})
        self.pids_cg = _make_child(_own_v1_group("pids"), name, {"pids.max": str(self.pids_max)})
        if self.mem_cg is not None:
            self.as_mib = None
            self.limits["memory"] = (f"cgroup v1 memory.limit_in_bytes={self.memory_mb} MiB "
                                     "(kernel is OOM-killed beyond it)")
        else:
            self.as_mib = max(self.memory_mb, MIN_AS_MIB)
            self.limits["memory"] = (f"RLIMIT_AS {self.as_mib} MiB of address space "
                                     "(no writable cgroup v1 memory controller)")
        if self.pids_cg is not None:
            self.limits["pids"] = f"cgroup v1 pids.max={self.pids_max}"
        else:
            self.limits["pids"] = "none (no writable cgroup v1 pids controller; pid namespace only)"
        self.limits["network"] = "none (bwrap --unshare-net)"
        self.limits["cpu"] = f"RLIMIT_CPU {self.cpu_s} s"
        self.limits["file_size"] = f"RLIMIT_FSIZE {self.fsize_mb} MiB"
        self.limits["open_files"] = "RLIMIT_NOFILE 1024"
        self.limits["tmp"] = f"tmpfs /tmp {self.tmp_mb} MiB, tmpfs /dev/shm {self.tmp_mb} MiB"
        self.limits["user"] = f"uid {SANDBOX_UID}, all capabilities dropped"
        self.limits["filesystem"] = (f"work dir read-write at {WORK_MOUNT}; /usr, the Python "
                                     "environment and a few /etc files read-only; nothing else")

    def _bind_args(self) -> list[str]:
        args: list[str] = ["--ro-bind", "/usr", "/usr"]
        for link, target in (("/lib", "usr/lib"), ("/lib64", "usr/lib64"),
                             ("/bin", "usr/bin"), ("/sbin", "usr/sbin")):
            args += ["--symlink", target, link]
        for f in _ETC_FILES:
            args += ["--ro-bind-try", f, f]
        for d in _ETC_DIRS_TRY:
            args += ["--ro-bind-try", d, d]
        # /dev is a fresh tmpfs sized at half the host's RAM; cap its writable /dev/shm like /tmp.
        args += ["--proc", "/proc", "--dev", "/dev",
                 "--size", str(self.tmp_mb << 20), "--tmpfs", "/dev/shm",
                 "--size", str(self.tmp_mb << 20), "--tmpfs", "/tmp"]
        # Bind the interpreter trees after /tmp's tmpfs so a tree under /tmp stays visible.
        for tree in self.python_trees():
            args += ["--ro-bind", tree, tree]
        args += ["--bind", str(self.conn_dir), str(self.conn_dir),
                 "--bind", str(self.workdir), WORK_MOUNT,
                 "--symlink", WORK_MOUNT, COLAB_CWD,
                 "--ro-bind", str(ENV_DIR), ENV_MOUNT]
        for host, inside in self.ro_mounts:
            args += ["--ro-bind", str(Path(host).resolve()), self.mount_point(inside)]
        for node in self.gpu_nodes:
            args += ["--dev-bind", node, node]
        if self.with_probe:
            args += ["--ro-bind", str(PROBE_DIR), PROBE_MOUNT,
                     "--ro-bind", str(self.stage_in), IN_MOUNT,
                     "--bind", str(self.stage_out), OUT_MOUNT]
        return args

    @staticmethod
    def mount_point(target: str) -> str:
        """Where a read-only mount goes: an absolute path as it is, a relative one inside the
        work folder (what a notebook finds beside it, e.g. ``cats_and_dogs_filtered``)."""
        if not target.startswith("/"):
            parts = Path(target).parts
            if not parts or any(p in ("..", ".") for p in parts):
                raise SandboxError(f"refusing read-only mount at {target!r}")
            return f"{WORK_MOUNT}/{Path(*parts)}"
        if target.rstrip("/") in ("", "/usr", "/proc", "/dev", "/tmp", COLAB_CWD, "/grader",
                                  ENV_MOUNT) or target.startswith(WORK_MOUNT):
            raise SandboxError(f"refusing read-only mount at {target!r}")
        return target

    @staticmethod
    def python_trees() -> list[str]:
        trees: list[str] = []
        for p in (sys.prefix, sys.base_prefix):
            real = str(Path(p).resolve())
            if real == "/usr" or real.startswith("/usr/") or real in trees:
                continue
            trees.append(real)
            if p != real and p not in trees:
                trees.append(p)
        return trees

    def _python(self) -> str:
        venv_python = Path(sys.prefix) / "bin" / "python"
        return str(venv_python if venv_python.exists() else Path(sys.executable))

    def _write_launcher(self, bwrap: str, prlimit: str) -> None:
        python_path = [ENV_MOUNT]
        for entry in self.python_path:
            parts = Path(entry).parts
            if entry.startswith("/") or not parts or ".." in parts:
                raise SandboxError(f"refusing python_path entry {entry!r}: expected a folder under the work folder")
            python_path.append(f"{WORK_MOUNT}/{Path(*parts)}")
        env = {"HOME": "/tmp", "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/bin:/bin",
               "IPYTHONDIR": "/tmp/.ipython", "MPLCONFIGDIR": "/tmp/.mpl",
               "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8",
               "PYTHONPATH": ":".join(python_path),
               # Text progress bars (tqdm.notebook falls back to them) redraw every 5 s, not 10 times a second.
               "TQDM_MININTERVAL": "5"}
        for key, value in self.env.items():
            if not key or "=" in key or "\0" in key + value:
                raise SandboxError(f"bad environment variable name {key!r}")
            if key == "PYTHONPATH":
                raise SandboxError("PYTHONPATH is the grader's; declare parts[].python_path instead")
            env[key] = value
        setenv: list[str] = []
        for key, value in env.items():
            setenv += ["--setenv", key, value]
        rlimits = [prlimit, f"--cpu={self.cpu_s}:{self.cpu_s + 5}",
                   f"--fsize={self.fsize_mb << 20}", "--nofile=1024", "--core=0"]
        if self.as_mib is not None:
            rlimits.append(f"--as={self.as_mib << 20}")
        # bwrap's own process is pid 1 inside the sandbox and its /proc/1/environ is readable
        # there, so it must not inherit the grader's environment (tokens, secrets).
        cmd = [find_tool("env") or "/usr/bin/env", "-i", "PATH=/usr/bin:/bin"] + rlimits + ["--", bwrap] + self._bind_args() + [
            "--chdir", WORK_MOUNT,
            "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--unshare-net",
            "--hostname", SANDBOX_HOSTNAME, "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            "--cap-drop", "ALL", "--disable-userns", "--die-with-parent", "--new-session",
            "--clearenv"] + setenv + ["--", self._python(), "-m", "ipykernel_launcher", "-f"]
        join = ""
        for group in (self.pids_cg, self.mem_cg):
            if group is not None:
                join += f"echo $$ > {shlex.quote(str(group / 'cgroup.procs'))}\n"
        script = (
            "#!/bin/sh\n"
            "# Starts one sandboxed ipykernel; argv: {connection_file} [kernel args]\n"
            "set -e\n"
            f"exec >>{shlex.quote(str(self.log_path))} 2>&1\n"
            f'[ "$(dirname "$1")" = {shlex.quote(str(self.conn_dir))} ] || '
            '{ echo "connection file outside the bound directory: $1"; exit 3; }\n'
            f"{join}"
            f"conn=\"$1\"; shift\n"
            f"exec {' '.join(shlex.quote(c) for c in cmd)} \"$conn\" \"$@\"\n"
        )
        self.launcher.write_text(script)
        self.launcher.chmod(stat.S_IRWXU)

    def _write_kernelspec(self) -> None:
        spec = {"argv": [str(self.launcher), "{connection_file}"],
                "display_name": "Python (grader sandbox)", "language": "python",
                "interrupt_mode": "message", "metadata": {"debugger": False}}
        (self.spec_dir / KERNEL_NAME / "kernel.json").write_text(json.dumps(spec))

    @property
    def kernel_dirs(self) -> list[str]:
        return [str(self.spec_dir)]

    @property
    def connection_file(self) -> str:
        return str(self.conn_dir / "c.json")

    @property
    def ipc_prefix(self) -> str:
        return str(self.conn_dir / "ipc")

    def launch_log(self, limit: int = 2000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - limit))
                return f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    # -- the canary

    def open_listener(self) -> int:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self._listener.setblocking(False)
        return self._listener.getsockname()[1]

    def listener_was_reached(self) -> bool:
        if self._listener is None:
            return False
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, OSError):
            return False
        conn.close()
        return True

    def sentinels(self) -> list[str]:
        """Host paths that exist here and must not exist inside the sandbox."""
        bound = ["/usr", *self.python_trees(), *(self.mount_point(inside) for _, inside in self.ro_mounts)]
        candidates = [REPO_ROOT / "pyproject.toml", REPO_ROOT / "rubrics", REPO_ROOT / "reference",
                      Path(__file__).resolve(), Path.home() / ".bashrc", Path("/etc/shadow"),
                      self.workdir.resolve(), self.workdir.resolve().parent]
        out = []
        for c in candidates:
            s = str(c)
            if s in ("/", WORK_MOUNT) or not os.path.lexists(s):
                continue
            if any(s == b or s.startswith(b.rstrip("/") + "/") for b in bound):
                continue
            out.append(s)
        return out

    def canary_code(self, port: int) -> str:
        return CANARY_TEMPLATE.format(sentinels=json.dumps(self.sentinels()), port=port,
                                      mark=CANARY_MARK)

    def check_canary(self, stdout: str) -> tuple[bool, str, dict]:
        report: dict = {}
        for line in stdout.splitlines():
            if line.startswith(CANARY_MARK):
                try:
                    report = json.loads(line[len(CANARY_MARK):])
                except ValueError:
                    report = {}
        problems = []
        if not report:
            problems.append("no sandbox report from the kernel")
        else:
            if report.get("uid") != SANDBOX_UID:
                problems.append(f"uid is {report.get('uid')}, not {SANDBOX_UID}")
            if report.get("cap_eff") is None or int(report["cap_eff"], 16) != 0:
                problems.append(f"capabilities present (CapEff {report.get('cap_eff')})")
            if report.get("visible"):
                problems.append(f"host paths visible: {', '.join(report['visible'])}")
            if report.get("tcp_host_listener") is not False:
                problems.append("a TCP connection to a host listener succeeded")
            if report.get("hostname") != SANDBOX_HOSTNAME:
                problems.append(f"hostname is {report.get('hostname')!r}")
            if report.get("cwd") != WORK_MOUNT:
                problems.append(f"cwd is {report.get('cwd')!r}")
        if self.listener_was_reached():
            problems.append("the host listener accepted a connection from the kernel")
        if problems:
            return False, "; ".join(problems), report
        return True, (f"passed: uid {report['uid']}, CapEff {report['cap_eff']}, "
                      f"{len(self.sentinels())} host paths hidden, host TCP unreachable"), report

    # -- processes

    def note_started(self, outer_pid: int | None) -> None:
        """Record the kernel's pid namespace so every member can be found later."""
        self._outer_pid = outer_pid
        if outer_pid is None:
            return
        own = _pid_ns(os.getpid())
        for _ in range(40):
            for child in _children_of(outer_pid):
                ns = _pid_ns(child)
                if ns and ns != own:
                    self._ns = ns
                    return
            time.sleep(0.05)

    def members(self) -> set[int]:
        pids = _cgroup_pids(self.pids_cg) | _cgroup_pids(self.mem_cg)
        if self._ns is not None:
            pids |= _members_of_ns(self._ns)
        if self._outer_pid is not None and _parent_of(self._outer_pid) == os.getpid():
            pids.add(self._outer_pid)
        pids.discard(os.getpid())
        return _alive(pids)

    def kill_all(self, wait_s: float = 15.0) -> set[int]:
        """SIGKILL every process of the sandbox and wait until none is left."""
        deadline = time.monotonic() + wait_s
        while True:
            left = self.members()
            if not left or time.monotonic() > deadline:
                return left
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.05)

    def oom_kills(self) -> int:
        if self.mem_cg is None:
            return 0
        try:
            for line in (self.mem_cg / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0

    def cleanup(self) -> None:
        left = self.kill_all() if hasattr(self, "private") else set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if not left:
            _remove_cgroup(self.pids_cg)
            _remove_cgroup(self.mem_cg)
        if hasattr(self, "private"):
            shutil.rmtree(self.private, ignore_errors=True)


CANARY_TEMPLATE = r'''
def _grader_canary():
    import json, os, socket
    r = {{"uid": os.getuid(), "gid": os.getgid(), "hostname": socket.gethostname(),
          "cwd": os.getcwd(), "cap_eff": None}}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                r["cap_eff"] = line.split()[1]
    r["visible"] = [p for p in {sentinels} if os.path.lexists(p)]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", {port}))
        r["tcp_host_listener"] = True
    except OSError:
        r["tcp_host_listener"] = False
    finally:
        s.close()
    print("{mark}" + json.dumps(r))
_grader_canary()
del _grader_canary
'''
