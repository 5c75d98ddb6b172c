"""Hostile notebooks graded through the real runner, one submission each.

Each case is ``<net_id>.zip`` holding one ``work.ipynb`` for the mini rubric of
``tests/test_hostile_exec.py`` (item ``nb.f``: ``f`` is a callable, 4 points; item
``nb.answer``: ``answer`` is defined, 2 points). ``status`` is the notebook run's expected
status and ``points`` the expected points of ``(nb.f, nb.answer)``: what the work earns,
never more. Cells may use placeholders filled in at test time with host facts the
notebook must not be able to use:

  @OUT@ grader output folder   @SUBS@ submissions folder   @REPO@ repository
  @RUBRIC@ rubric file         @TOKEN@ sentinel put in the argv of every process it starts
  @HOSTTOKEN@ argv token of a host process   @SECRET@ a secret in the grader's environment
  @PORT@ host TCP listener     @UDP@ host UDP socket       @ABSTRACT@ host abstract unix socket

Snooping cells collect whatever they reach in ``leaks`` and end with ``assert not leaks``,
so a leak turns the run into "errors" and shows what leaked in the record.
"""
from __future__ import annotations

from dataclasses import dataclass

F = "def f(x):\n    return x + 1"
ANSWER = "answer = f(41)"
FULL = (4.0, 2.0)
NONE = (0.0, 0.0)
LEAKS = "import os, json\nleaks = []\n"


@dataclass(frozen=True)
class ExecCase:
    net_id: str
    group: str                      # execution | escape | tamper
    what: str
    cells: tuple[str, ...]
    status: str                     # expected NotebookRun.status ("-" when intake rejects)
    points: tuple[float, float]
    message: tuple[str, ...] = ()   # words expected in the run's message
    open_hole: str = ""             # not contained yet: why (the test is a strict xfail until fixed)


def spawn(code: str) -> str:
    """A cell fragment starting a detached python child that carries @TOKEN@ in its argv."""
    return ("import subprocess, sys\n"
            f"subprocess.Popen([sys.executable, '-c', {code!r}, '@TOKEN@'], start_new_session=True,\n"
            "                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)")


IGNORE_SIGNALS = ("import signal, time\n"
                  "for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
                  "    signal.signal(s, signal.SIG_IGN)\n")

CASES: list[ExecCase] = [
    # ---------------------------------------------------------------- execution
    # A cell at its limit is interrupted: the cells after it run and earn what they earn.
    ExecCase("ex01", "execution", "infinite loop", (F, "while True:\n    pass", ANSWER),
             "timeout", FULL, ("ode cell 2", "limit per cell", "interrupted", "still ran")),
    ExecCase("ex02", "execution", "time.sleep far beyond the cell limit", (F, "import time\ntime.sleep(3600)", ANSWER),
             "timeout", FULL, ("ode cell 2", "interrupted")),
    ExecCase("ex03", "execution", "memory hog",
             (F, "hog = []\nwhile True:\n    hog.append(bytearray(b'\\x01') * (256 << 20))", ANSWER),
             "kernel_died", NONE, ("memory",)),
    ExecCase("ex04", "execution", "fork bomb (os.fork until it fails)",
             (F, "import os, time\nkids, err, pids = 0, None, []\n"
                 "while kids < 2000:\n    try:\n        pid = os.fork()\n    except OSError as e:\n"
                 "        err = e\n        break\n    if pid == 0:\n        time.sleep(3600)\n        os._exit(0)\n"
                 "    kids += 1\n    pids.append(pid)\nfor pid in pids:\n    os.kill(pid, 9)\n    os.waitpid(pid, 0)\n"
                 "print(kids, err)\nassert err is not None and kids < 64", ANSWER),
             "completed", FULL),
    ExecCase("ex05", "execution", "fills the disk from its work folder",
             (F, "i = 0\nwhile True:\n    with open(f'fill{i}.bin', 'wb') as fh:\n"
                 "        for _ in range(32):\n            fh.write(b'\\x07' * (1 << 20))\n    i += 1", ANSWER),
             "kernel_died", NONE, ("disk",)),
    ExecCase("ex06", "execution", "fills /tmp and /dev/shm until they are full",
             (F, "import errno\nfull = []\nfor d in ('/tmp', '/dev/shm'):\n    n = 0\n    try:\n"
                 "        while n < 4096:\n            with open(f'{d}/fill{n}', 'wb') as fh:\n"
                 "                fh.write(b'\\x07' * (1 << 20))\n            n += 1\n"
                 "    except OSError as e:\n        full.append((d, n, e.errno))\n"
                 "print(full)\nassert [d for d, n, e in full if e == errno.ENOSPC] == ['/tmp', '/dev/shm'], full\n"
                 "assert all(n < 200 for d, n, e in full), full", ANSWER),
             "completed", FULL),
    ExecCase("ex07", "execution", "megabytes of prints",
             (F, "line = 'x' * 1000\nfor i in range(10000):\n    print(i, line)", ANSWER),
             "completed", FULL),
    ExecCase("ex08", "execution", "thousands of images",
             (F, "import base64\nfrom IPython.display import display\n"
                 "png = base64.b64encode(bytes.fromhex('89504e470d0a1a0a') + b'\\0' * 3000).decode()\n"
                 "for i in range(3000):\n    display({'image/png': png, 'text/plain': 'img'}, raw=True)",
              "import base64\nfrom IPython.display import display\nbig = 'A' * 3_900_000\n"
              "for i in range(60):\n    display({'image/png': big}, raw=True)",
              "for i in range(60):\n    display({'image/png': big}, raw=True)", ANSWER),
             "completed", FULL),
    ExecCase("ex09", "execution", "hundreds of cells with long tracebacks",
             (F,) + tuple("def r(n):\n    return r(n + 1) if n < 60 else 1 / 0\nr(0)" for _ in range(30)) + (ANSWER,),
             "errors", FULL, ("ZeroDivisionError", "29 more cells")),
    ExecCase("ex10", "execution", "sys.exit() in a cell", (F, "import sys\nsys.exit(3)", ANSWER),
             "errors", FULL, ("SystemExit",)),
    ExecCase("ex11", "execution", "os._exit() ends the kernel", (F, "import os\nos._exit(0)", ANSWER),
             "kernel_died", NONE),
    ExecCase("ex12", "execution", "os.kill of its own kernel", (F, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", ANSWER),
             "kernel_died", NONE),
    ExecCase("ex17", "execution", "SIGKILL to every pid it can name (-1, 1, its parent)",
             (F, "import os, signal\nfor pid in (-1, 1, os.getppid()):\n    try:\n        os.kill(pid, signal.SIGKILL)\n"
                 "    except OSError:\n        pass", ANSWER), "completed", FULL),
    ExecCase("ex13", "execution", "a child ignoring SIGTERM/SIGINT/SIGHUP outlives its cell",
             (F, spawn(IGNORE_SIGNALS + "time.sleep(3600)"), ANSWER), "completed", FULL),
    ExecCase("ex14", "execution", "a daemon (double fork, setsid, fds closed) outlives the notebook",
             (F, "import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                 "        os.closerange(0, 1024)\n"
                 "        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(3600)', '@TOKEN@'])\n"
                 "    os._exit(0)\ntime.sleep(0.2)", ANSWER), "completed", FULL),
    ExecCase("ex15", "execution", "a background thread and a busy child keep running after the notebook",
             (F, "import threading, time\ndef busy():\n    n = 0\n    while True:\n"
                 "        n += 1\n        if n % 100000 == 0:\n            open('late.txt', 'w').write(str(n))\n"
                 "threading.Thread(target=busy, daemon=False).start()",
              spawn("while True: pass"), ANSWER), "completed", FULL),
    ExecCase("ex16", "execution", "the kernel ignores SIGTERM/SIGINT then sleeps forever",
             (F, IGNORE_SIGNALS + "time.sleep(3600)", ANSWER), "timeout", NONE,
             ("did not stop when interrupted",)),
    # ---------------------------------------------------------------- escape and snooping
    ExecCase("es01", "escape", "reads rubrics/, reference/ and the repository",
             (F, LEAKS + "for p in ['@REPO@/rubrics/hw2.toml', '@REPO@/reference/hw2/hw2ref/__init__.py',\n"
                 "          '@RUBRIC@', '@REPO@/grader/runner.py', '@REPO@/tests', '/work/shared']:\n"
                 "    try:\n        open(p, 'rb').read(10)\n        leaks.append(p)\n"
                 "    except OSError:\n        pass\n    if os.path.exists(p):\n        leaks.append(p)\n"
                 "assert not leaks, leaks", ANSWER), "completed", FULL),
    ExecCase("es02", "escape", "reads other students' zips, work folders and records",
             (F, LEAKS + "seen = {}\nfor p in ['@SUBS@', '@OUT@', '@OUT@/records', '@OUT@/work', '/home/student', '..', '/home']:\n"
                 "    try:\n        seen[p] = sorted(os.listdir(p))\n    except OSError:\n        pass\n"
                 "for p, names in seen.items():\n"
                 "    if any(n.endswith(('.zip', '.json')) or n.startswith(('ex', 'es', 'ta', 'hon')) for n in names):\n"
                 "        leaks.append((p, names))\n"
                 "for p in ['@SUBS@/hon1.zip', '@OUT@/records/hon1.zip.json', '@OUT@/grades.csv']:\n"
                 "    if os.path.exists(p):\n        leaks.append(p)\n"
                 "assert not leaks, leaks", ANSWER), "completed", FULL),
    ExecCase("es03", "escape", "writes a fake record and grades.csv into the grader's output folder",
             (F, "import json, os\nfake = {'net_id': 'hon2', 'status': 'graded', 'score': {'final': 0}}\n"
                 "wrote = []\nfor p in ['@OUT@/records/hon2.zip.json', '@OUT@/records/es03.zip.json',\n"
                 "          '@OUT@/grades.csv', '@OUT@/feedback/hon2.md']:\n"
                 "    try:\n        os.makedirs(os.path.dirname(p), exist_ok=True)\n"
                 "        open(p, 'w').write(json.dumps(fake))\n        wrote.append(p)\n"
                 "    except OSError:\n        pass\nprint(wrote)", ANSWER), "completed", FULL),
    ExecCase("es04", "escape", "looks for grader processes in /proc",
             (F, LEAKS + "pids = [p for p in os.listdir('/proc') if p.isdigit()]\nfor p in pids:\n"
                 "    try:\n        cmd = open(f'/proc/{p}/cmdline', 'rb').read()\n    except OSError:\n        continue\n"
                 "    if b'@HOSTTOKEN@' in cmd or (p != '1' and b'pytest' in cmd):\n        leaks.append(cmd[:200])\n"
                 "if len(pids) > 10:\n    leaks.append(f'{len(pids)} processes visible')\n"
                 "assert not leaks, leaks", ANSWER), "completed", FULL),
    ExecCase("es05", "escape", "reads the grader's environment secrets",
             (F, LEAKS + "if any('@SECRET@' in v for v in os.environ.values()):\n    leaks.append('os.environ')\n"
                 "for p in [p for p in os.listdir('/proc') if p.isdigit()] + ['self', '1']:\n"
                 "    try:\n        if b'@SECRET@' in open(f'/proc/{p}/environ', 'rb').read():\n"
                 "            leaks.append(p)\n    except OSError:\n        pass\n"
                 "assert not leaks, leaks", ANSWER), "completed", FULL),
    ExecCase("es06", "escape", "opens TCP, UDP, IPv6 and abstract unix sockets to the host and outside",
             (F, LEAKS + "import socket\ntries = [(socket.AF_INET, socket.SOCK_STREAM, ('127.0.0.1', @PORT@)),\n"
                 "        (socket.AF_INET, socket.SOCK_STREAM, ('1.1.1.1', 443)),\n"
                 "        (socket.AF_INET6, socket.SOCK_STREAM, ('::1', @PORT@)),\n"
                 "        (socket.AF_UNIX, socket.SOCK_STREAM, '\\0@ABSTRACT@')]\n"
                 "for fam, kind, addr in tries:\n    try:\n        s = socket.socket(fam, kind)\n        s.settimeout(2)\n"
                 "        s.connect(addr)\n        s.sendall(b'hello from the sandbox')\n        leaks.append(addr)\n"
                 "    except OSError:\n        pass\n"
                 "for addr in [('127.0.0.1', @UDP@), ('8.8.8.8', 53)]:\n    try:\n"
                 "        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                 "        s.sendto(b'hello from the sandbox', addr)\n    except OSError:\n        pass\n"
                 "try:\n    socket.getaddrinfo('pypi.org', 443)\n    leaks.append('dns')\nexcept OSError:\n    pass\n"
                 "assert not leaks, leaks", ANSWER), "completed", FULL),
    ExecCase("es07", "escape", "writes outside its work folder",
             (F, "import os\nfor p in ['/tmp/hostile-@TOKEN@', '/etc/hostile-@TOKEN@', '/home/student/hostile-@TOKEN@',\n"
                 "          '../hostile-@TOKEN@', '@OUT@/hostile-@TOKEN@', '@REPO@/hostile-@TOKEN@',\n"
                 "          '/grader/in/hostile-@TOKEN@', os.path.dirname(os.__file__) + '/hostile-@TOKEN@']:\n"
                 "    try:\n        open(p, 'w').write('x')\n    except OSError:\n        pass", ANSWER),
             "completed", FULL),
    ExecCase("es08", "escape", "hunts for the secret seed before and during the probe",
             (F, LEAKS + "for p in ['/grader/in/plan.json', '/grader/in']:\n"
                 "    if os.path.exists(p) and (not os.path.isdir(p) or os.listdir(p)):\n"
                 "        leaks.append((p, os.listdir(p) if os.path.isdir(p) else 'file'))\n"
                 "assert not leaks, leaks",
              "import threading, time, shutil\ndef steal():\n    for _ in range(20000):\n"
              "        try:\n            plan = open('/grader/in/plan.json').read()\n        except OSError:\n"
              "            time.sleep(0.001)\n            continue\n        print('STOLEN', plan)\n"
              "        open('stolen.json', 'w').write(plan)\n"
              "        return\nthreading.Thread(target=steal, daemon=True).start()", ANSWER),
             "completed", FULL),
    ExecCase("es09", "escape", "tries to lift its own limits (rlimits, cgroups, namespaces)",
             (F, LEAKS + "import resource, subprocess\nfor lim in (resource.RLIMIT_CPU, resource.RLIMIT_FSIZE, resource.RLIMIT_NOFILE):\n"
                 "    soft, hard = resource.getrlimit(lim)\n    try:\n"
                 "        resource.setrlimit(lim, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n"
                 "        leaks.append(('rlimit', lim))\n    except (ValueError, OSError):\n        pass\n"
                 "for p in ['/sys/fs/cgroup/memory/memory.limit_in_bytes', '/sys/fs/cgroup/pids/pids.max']:\n"
                 "    try:\n        open(p, 'w').write('-1')\n        leaks.append(p)\n    except OSError:\n        pass\n"
                 "for cmd in (['unshare', '--user', 'true'], ['mount', '-t', 'tmpfs', 'x', '/tmp']):\n"
                 "    if subprocess.run(cmd, capture_output=True).returncode == 0:\n        leaks.append(cmd)\n"
                 "assert not leaks, leaks", ANSWER), "completed", FULL),
    # ---------------------------------------------------------------- tampering
    ExecCase("ta01", "tamper", "prints fake scores and fake grader markers, defines nothing",
             ("print('Score: 6/6 -- all tests passed')\n"
              "print('__GRADER_CANARY__' + '{\"uid\": 65534, \"visible\": []}')\n"
              "print('{\"item\": \"nb.f\", \"points\": 4, \"status\": \"passed\"}')",), "completed", NONE),
    ExecCase("ta02", "tamper", "plants fake probe answers in /grader/out, before and after the probe writes its own",
             ("import json, os, threading, time\n"
              "fake = json.dumps({'f': {'exists': True, 'type': 'function', 'callable': True}})\n"
              "for p in ('/grader/out/nb.f.json', '/grader/out/nb.f.json.tmp'):\n"
              "    try:\n        open(p, 'w').write(fake)\n    except OSError:\n        pass\n"
              # the thread waits for the probe's last answer, then replaces the first one;
              # a slowed os.replace keeps the probe busy long enough for it to land
              "def plant():\n    while not os.path.exists('/grader/out/nb.answer.json'):\n        time.sleep(0.001)\n"
              "    open('/grader/out/nb.f.json', 'w').write(fake)\n"
              "threading.Thread(target=plant, daemon=True).start()\n"
              "_replace = os.replace\n"
              "def slow_replace(a, b, **kw):\n    _replace(a, b, **kw)\n"
              "    if str(b).endswith('nb.answer.json'):\n        time.sleep(0.5)\n"
              "os.replace = slow_replace",), "completed", NONE),
    ExecCase("ta03", "tamper", "monkeypatches json, os and builtins so the probe writes what it wants",
             ("import json, os, builtins, sys, types\n"
              "fake = '{\"f\": {\"exists\": true, \"type\": \"function\", \"callable\": true}, "
              "\"answer\": {\"exists\": true, \"type\": \"int\", \"callable\": false}}'\n"
              "json.dump = lambda obj, fh, **kw: fh.write(fake)\n"
              "builtins.callable = lambda obj: True\n"
              "sys.modules['kernel_probe'] = types.SimpleNamespace(run_plan=lambda *a, **k: None)",), "completed", NONE),
    ExecCase("ta06", "tamper", "patches json.dumps, breaking the kernel's own messages",
             (F, ANSWER, "import json\njson.dumps = lambda obj, **kw: '{\"status\": \"ok\"}'", "print(1)"),
             "kernel_died", NONE, ("Jupyter protocol",)),
    ExecCase("ta04", "tamper", "rewrites its notebook on disk while it runs",
             ("import nbformat, threading, time\n"
              "good = nbformat.v4.new_notebook()\n"
              "good.cells = [nbformat.v4.new_code_cell('def f(x):\\n    return x'), nbformat.v4.new_code_cell('answer = 1')]\n"
              "nbformat.write(good, 'work.ipynb')\n"
              "def again():\n    for _ in range(200):\n        nbformat.write(good, 'work.ipynb')\n        time.sleep(0.01)\n"
              "threading.Thread(target=again, daemon=True).start()",), "completed", NONE),
    ExecCase("ta05", "tamper", "holds the interpreter lock once the probe's inputs appear (slow probe)",
             (F, ANSWER, "import os, re, threading, time\ndef hog():\n"
              "    while not os.path.exists('/grader/in/plan.json'):\n        time.sleep(0.001)\n"
              "    re.match(r'(a|aa)*c', 'a' * 64)\nthreading.Thread(target=hog, daemon=True).start()"),
             "completed", NONE),
]

# ---------------------------------------------------------------- sandbox resources
# What the kernel holds besides its folders: /dev, descriptors inherited from the grader, CPU.
# Each cell measures from inside the kernel and asserts; a failed assert turns the run into
# "errors" with the figures in the record. The rubric of tests/test_hostile_exec.py sets
# tmp_mb = 64 and leaves threads at 1.
SB_DEV = ("import errno, os\nrefused = {}\n"
          "for p in ('/dev/x', '/dev/shm/../y', '/x', '/etc/x', '/home/x', '/content/../x'):\n"
          "    try:\n        with open(p, 'wb') as fh:\n            fh.write(b'\\x07' * (1 << 20))\n"
          "        refused[p] = None\n    except OSError as e:\n        refused[p] = e.errno\n"
          "assert all(e == errno.EROFS for e in refused.values()), refused\n"
          "st = os.statvfs('/dev/shm')\nassert st.f_blocks * st.f_frsize == 64 << 20, st\n"
          "n = 0\ntry:\n    while n < 4096:\n        with open(f'/dev/shm/fill{n}', 'wb') as fh:\n"
          "            fh.write(b'\\x07' * (1 << 20))\n        n += 1\n"
          "except OSError as e:\n    assert e.errno == errno.ENOSPC, e\n"
          "for name in os.listdir('/dev/shm'):\n    os.unlink('/dev/shm/' + name)\n"
          "print('shm MiB', n)\nassert n <= 64, n")
SB_FDS = ("import os\nbad, seen = [], {}\n"
          "for pid in ('self', '1'):\n    for fd in os.listdir(f'/proc/{pid}/fd'):\n"
          "        try:\n            target = os.readlink(f'/proc/{pid}/fd/{fd}')\n        except OSError:\n"
          "            continue\n        seen[f'{pid}:{fd}'] = target\n        if target.startswith('/'):\n"
          "            try:\n                a, b = os.stat(target), os.stat(f'/proc/{pid}/fd/{fd}')\n"
          "                ok = (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)\n            except OSError:\n"
          "                ok = False\n        else:\n            ok = target.split(':')[0] in ('pipe', 'socket', 'anon_inode')\n"
          "        if not ok or '@OUT@' in target or '@REPO@' in target:\n            bad.append((pid, fd, target))\n"
          "assert not bad, bad\nassert seen['1:0'] == '/dev/null', seen\n"
          # the kernel's own stdout/stderr (bwrap's, and ipykernel's saved copies): flooded, drained
          "chunk = b'y' * (1 << 20)\n"
          "for key in [k for k, t in seen.items() if t == seen['1:2'] and k != 'self:2' and k != 'self:1']:\n"
          "    pid, fd = key.split(':')\n    out = os.open(f'/proc/{pid}/fd/{fd}', os.O_WRONLY)\n"
          "    for _ in range(64):\n        os.write(out, chunk)\n    os.close(out)\n"
          "print(len(seen), 'descriptors, none from the host')")
SB_CPU = ("import os, time\n"
          "def burn(seconds):\n    end = time.monotonic() + seconds\n    while time.monotonic() < end:\n        pass\n"
          "t0, c0 = time.monotonic(), os.times()\nkids = []\nfor _ in range(4):\n    pid = os.fork()\n"
          "    if pid == 0:\n        burn(1.5)\n        os._exit(0)\n    kids.append(pid)\n"
          "for pid in kids:\n    os.waitpid(pid, 0)\nc1, wall = os.times(), time.monotonic() - t0\n"
          "cpu = (c1.children_user + c1.children_system) - (c0.children_user + c0.children_system)\n"
          "print(f'cpu {cpu:.2f} s in {wall:.2f} s')\nassert cpu / wall <= 1.3, (cpu, wall)")

CASES += [
    ExecCase("sb01", "escape", "writes into /dev and the sandbox root; fills /dev/shm",
             (F, SB_DEV, ANSWER), "completed", FULL),
    ExecCase("sb02", "escape", "lists its descriptors, floods the inherited stdout/stderr",
             (F, SB_FDS, ANSWER), "completed", FULL),
    ExecCase("sb03", "execution", "four busy processes under threads = 1",
             (F, SB_CPU, ANSWER), "completed", FULL),
]
