"""The canary: code run hidden in every kernel before any student cell, reporting what the
sandbox lets it see (uid, capabilities, host paths, the network, writable mounts, open
descriptors); the grader refuses to grade when the report is not that of an isolated kernel."""
from __future__ import annotations

import json

CANARY_MARK = "__GRADER_CANARY__"
SANDBOX_UID = 65534
SANDBOX_HOSTNAME = "sandbox"
WORK_MOUNT = "/home/student/work"


def code(sentinels: list[str], port: int) -> str:
    return CANARY_TEMPLATE.format(sentinels=json.dumps(sentinels), port=port, mark=CANARY_MARK)


def check(stdout: str, n_sentinels: int, listener_reached: bool) -> tuple[bool, str, dict]:
    """(isolated, summary, the kernel's report) from what the canary printed and whether the
    host listener was reached."""
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
        if report.get("writable") != []:
            problems.append(f"writable outside its folders: {', '.join(report.get('writable') or ['?'])}")
        if report.get("host_fds") != []:
            problems.append(f"host descriptors open: {', '.join((report.get('host_fds') or ['?'])[:5])}")
    if listener_reached:
        problems.append("the host listener accepted a connection from the kernel")
    if problems:
        return False, "; ".join(problems), report
    return True, (f"passed: uid {report['uid']}, CapEff {report['cap_eff']}, "
                  f"{n_sentinels} host paths hidden, host TCP unreachable, "
                  "/ and /dev read-only, no host descriptors"), report


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
    # bwrap's own tmpfs for / and /dev must be read-only mounts (the work folder, /tmp and
    # /dev/shm are mounts of their own).
    r["writable"] = [d for d in ("/", "/dev", "/etc") if not os.statvfs(d).f_flag & os.ST_RDONLY]
    # Every descriptor is a pipe, a socket, an anonymous inode or a file the sandbox itself
    # shows at that path; one that names anything else came in from the host.
    r["host_fds"] = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue                    # the listing's own descriptor, already closed
        if not target.startswith("/"):
            if target.split(":")[0] not in ("pipe", "socket", "anon_inode"):
                r["host_fds"].append(fd + " " + target)
            continue
        try:
            a, b = os.stat(target), os.fstat(int(fd))
            same = (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
        except OSError:
            same = False
        if not same:
            r["host_fds"].append(fd + " " + target)
    print("{mark}" + json.dumps(r))
_grader_canary()
del _grader_canary
'''
