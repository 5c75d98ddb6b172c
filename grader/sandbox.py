"""The bubblewrap sandbox that student kernels run in.

A `Sandbox` owns one kernel's private resources: a short directory under /tmp
(connection file and IPC sockets, bound into the sandbox), a kernel spec whose
argv is a launcher written at run time (absolute paths differ between clones),
cgroup v1 children for memory, pids and CPU time when the host allows it, the pipe
that takes the kernel's own stdout and stderr, and the kill logic that makes sure no
process of the sandbox outlives the run.
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

from grader import canary, procs
from grader.probe.wire import PROBE_MOUNT
from grader.canary import SANDBOX_HOSTNAME, SANDBOX_UID, WORK_MOUNT
from grader.procs import CPU_PERIOD_US
from grader.sandbox_output import OUTPUT_HEAD_BYTES, OUTPUT_TAIL_BYTES, KernelOutput

IN_MOUNT = "/grader/in"
OUT_MOUNT = "/grader/out"
KERNEL_NAME = "grader-sandbox"
PROBE_DIR = Path(__file__).resolve().parent / "probe"
ENV_DIR = Path(__file__).resolve().parent / "kernel_env"     # the course environment (grader/environment.py)
ENV_MOUNT = "/grader/env"
COLAB_CWD = "/content"          # Colab's working folder: absolute /content/... paths reach the work folder
REPO_ROOT = Path(__file__).resolve().parents[1]
# Inside an ipykernel, RLIMIT_AS below ~2 GiB breaks `import torch` (measured).
MIN_AS_MIB = 2048
# /dev inside the sandbox: bwrap's --dev nodes, then read-only; /dev/shm is a capped tmpfs.
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")

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
    threads: int = 1                                        # CPU cores the kernel may use (cgroup quota); 0: no quota

    private: Path = field(init=False)
    conn_dir: Path = field(init=False)
    spec_dir: Path = field(init=False)
    launcher: Path = field(init=False)
    stage_in: Path = field(init=False)
    stage_out: Path = field(init=False)
    mem_cg: Path | None = field(init=False, default=None)
    pids_cg: Path | None = field(init=False, default=None)
    cpu_cg: Path | None = field(init=False, default=None)
    limits: dict[str, str] = field(init=False, default_factory=dict)
    as_mib: int | None = field(init=False, default=None)
    _outer_pid: int | None = field(init=False, default=None)
    _ns: str | None = field(init=False, default=None)
    _listener: socket.socket | None = field(init=False, default=None)
    output: KernelOutput = field(init=False, default_factory=KernelOutput)   # the kernel's stdout/stderr

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
            self.output.open()
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
        self.mem_cg = procs.make_child(procs.own_v1_group("memory"), name, {
            "memory.limit_in_bytes": limit, "memory.memsw.limit_in_bytes": limit})
        self.pids_cg = procs.make_child(procs.own_v1_group("pids"), name, {"pids.max": str(self.pids_max)})
        quota = None
        if self.threads > 0:
            cpu_parent = procs.own_v1_group("cpu")
            quota = procs.cpu_quota(cpu_parent, self.threads)
            self.cpu_cg = procs.make_child(cpu_parent, name, {
                "cpu.cfs_period_us": str(CPU_PERIOD_US), "cpu.cfs_quota_us": str(quota)})
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
        if self.cpu_cg is not None and quota is not None:
            capped = "" if quota == self.threads * CPU_PERIOD_US else ", capped by the grader's own group"
            self.limits["cpu_quota"] = (f"cgroup v1 cpu.cfs_quota_us={quota} per cpu.cfs_period_us="
                                        f"{CPU_PERIOD_US}: {quota / CPU_PERIOD_US:g} core(s) for "
                                        f"{self.threads} thread(s){capped}")
        elif self.threads > 0:
            self.limits["cpu_quota"] = (f"none (no writable cgroup v1 cpu controller): {self.threads} "
                                        "thread(s) is only the OMP/MKL setting; RLIMIT_CPU and the time "
                                        "limits bound the CPU time")
        else:
            self.limits["cpu_quota"] = "none (no quota asked for)"
        self.limits["file_size"] = f"RLIMIT_FSIZE {self.fsize_mb} MiB"
        self.limits["open_files"] = "RLIMIT_NOFILE 1024"
        self.limits["tmp"] = f"tmpfs /tmp {self.tmp_mb} MiB, tmpfs /dev/shm {self.tmp_mb} MiB"
        self.limits["devices"] = ("/dev read-only with " + ", ".join(DEV_NODES) + ", pts"
                                  + (" and " + ", ".join(Path(n).name for n in self.gpu_nodes) if self.gpu_nodes else "")
                                  + f"; /dev/shm writable up to {self.tmp_mb} MiB")
        self.limits["kernel_output"] = (f"stdin /dev/null; stdout and stderr a pipe the grader drains, "
                                        f"keeping the first {OUTPUT_HEAD_BYTES >> 10} KiB and the last "
                                        f"{OUTPUT_TAIL_BYTES >> 10} KiB; no other descriptor of the grader")
        self.limits["user"] = f"uid {SANDBOX_UID}, all capabilities dropped"
        self.limits["filesystem"] = (f"work dir read-write at {WORK_MOUNT}; /usr, the Python "
                                     "environment and a few /etc files read-only; the sandbox's root "
                                     "read-only; nothing else")

    def _bind_args(self) -> list[str]:
        args: list[str] = ["--ro-bind", "/usr", "/usr"]
        for link, target in (("/lib", "usr/lib"), ("/lib64", "usr/lib64"),
                             ("/bin", "usr/bin"), ("/sbin", "usr/sbin")):
            args += ["--symlink", target, link]
        for f in _ETC_FILES:
            args += ["--ro-bind-try", f, f]
        for d in _ETC_DIRS_TRY:
            args += ["--ro-bind-try", d, d]
        # bwrap's /dev (and its root) are tmpfs sized at half the host's RAM: both are made
        # read-only once everything is mounted (_readonly_args); /dev/shm is capped like /tmp.
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
        return args + self._readonly_args()

    @staticmethod
    def _readonly_args() -> list[str]:
        """Last, once every mount point exists: bwrap's own tmpfs for ``/dev`` and for the root
        become read-only (not recursive, so /dev/shm, /tmp, the binds and the device nodes,
        each its own mount, keep their modes)."""
        return ["--remount-ro", "/dev", "--remount-ro", "/"]

    @staticmethod
    def mount_point(target: str) -> str:
        """Where a read-only mount goes: an absolute path as it is, a relative one inside the
        work folder (what a notebook finds beside it, a data folder the notebook opens by a relative path)."""
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
        for group in (self.pids_cg, self.mem_cg, self.cpu_cg):
            if group is not None:
                join += f"echo $$ > {shlex.quote(str(group / 'cgroup.procs'))}\n"
        stat_tool = shlex.quote(find_tool("stat") or "/usr/bin/stat")
        pipe = os.fstat(self.output.write_end).st_ino if self.output.write_end is not None else -1
        script = (
            "#!/bin/sh\n"
            "# Starts one sandboxed ipykernel; argv: {connection_file} [kernel args]\n"
            "set -e\n"
            # Only the grader's drained pipe may stay as stdout/stderr; anything else the
            # launcher inherited (a log file, a terminal) is replaced by /dev/null.
            "exec </dev/null\n"
            f'[ "$({stat_tool} -L -c %i /proc/$$/fd/1 2>/dev/null)" = "{pipe}" ] || exec >/dev/null\n'
            f'[ "$({stat_tool} -L -c %i /proc/$$/fd/2 2>/dev/null)" = "{pipe}" ] || exec 2>/dev/null\n'
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

    # -- the kernel's stdout and stderr

    def launch_io(self) -> dict:
        """Popen arguments for the launcher: no stdin, stdout and stderr into the drained pipe."""
        return self.output.launch_io()

    def kernel_started(self) -> None:
        """The launcher has the pipe now: the grader's copy of its write end is not needed."""
        self.output.kernel_started()

    def launch_log(self, limit: int = 2000) -> str:
        """The end of what the launcher, bwrap and the kernel wrote to stdout/stderr."""
        return self.output.log(limit)

    @property
    def output_bytes(self) -> int:
        return self.output.total

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
        return canary.code(self.sentinels(), port)

    def check_canary(self, stdout: str) -> tuple[bool, str, dict]:
        return canary.check(stdout, len(self.sentinels()), self.listener_was_reached())

    # -- processes

    def note_started(self, outer_pid: int | None) -> None:
        """Record the kernel's pid namespace so every member can be found later."""
        self._outer_pid = outer_pid
        self.kernel_started()
        if outer_pid is None:
            return
        own = procs.pid_ns(os.getpid())
        for _ in range(40):
            for child in procs.children_of(outer_pid):
                ns = procs.pid_ns(child)
                if ns and ns != own:
                    self._ns = ns
                    return
            time.sleep(0.05)

    def members(self) -> set[int]:
        pids = procs.cgroup_pids(self.pids_cg) | procs.cgroup_pids(self.mem_cg) | procs.cgroup_pids(self.cpu_cg)
        if self._ns is not None:
            pids |= procs.members_of_ns(self._ns)
        if self._outer_pid is not None and procs.parent_of(self._outer_pid) == os.getpid():
            pids.add(self._outer_pid)
        pids.discard(os.getpid())
        return procs.alive(pids)

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
            procs.remove_cgroup(self.pids_cg)
            procs.remove_cgroup(self.mem_cg)
            procs.remove_cgroup(self.cpu_cg)
        self.output.close()
        if hasattr(self, "private"):
            shutil.rmtree(self.private, ignore_errors=True)


