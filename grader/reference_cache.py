"""Results of the reference package's deterministic computations, kept on disk per machine.

Some judgements need a reference result that does not depend on any student: a released
training's per-step losses, the batches of a released data stream. Each costs seconds to a
minute of CPU, and every grading process (each worker of a batch, each regrade) would pay it
again. Here it is computed once per cache folder and machine, then loaded as plain values
(``torch.load(weights_only=True)``). The key is the hook, its arguments, the reference
package's digest, and the torch and numpy builds with the CPU's vector extension: float
results are exact only on the build and instruction set that computed them (a cluster whose
nodes share a cache folder keeps one entry per kind of node). A lock lets concurrent workers
wait for the one computing instead of computing it twice.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import platform
from pathlib import Path
from typing import Any, Callable

REFERENCE_SUFFIXES = (".py", ".ipynb", ".json", ".toml", ".csv", ".txt")

_DIGESTS: dict[str, str] = {}
_LOADED: dict[str, Any] = {}


def reference_digest(root: Path) -> str:
    """The reference package's code and data as judging reads them: source and data files, not
    hidden ones, not the assignment's own tests (a ``tests`` folder: they check the reference,
    judging never reads them), and never a grading output folder that happens to lie inside it
    (a rubric kept beside ``--out``: its records, runs and other workers' scratch come and go). os.walk skips
    what vanishes while it walks; output folders are pruned before it enters them."""
    h = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")) and d != "tests"
                         and not ((here / d / "seed").is_file() and (here / d / "records").is_dir()))
        for name in sorted(files):
            path = here / name
            if path.suffix not in REFERENCE_SUFFIXES or name.startswith(".") or path.is_symlink():
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            h.update(str(path.relative_to(root)).encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def package_digest(root: Path | None) -> str:
    """``reference_digest``, walked once per process for each folder ("-" for none)."""
    if root is None:
        return "-"
    key = str(root)
    if key not in _DIGESTS:
        _DIGESTS[key] = reference_digest(Path(root)) if Path(root).is_dir() else "-"
    return _DIGESTS[key]


def build_key(name: str, reference_dir: Path | None) -> str:
    """What a reference result depends on besides its name: the package and the numeric build."""
    import numpy
    import torch
    try:
        isa = torch.backends.cpu.get_cpu_capability()
    except Exception:   # older torch: the machine name alone
        isa = "?"
    parts = [name, package_digest(reference_dir), torch.__version__, numpy.__version__,
             platform.machine(), isa]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def cached(name: str, reference_dir: Path | None, cache_dir: Path | None, compute: Callable[[], Any]) -> Any:
    """``compute()`` (plain values: numbers, strings, lists, dicts, tensors), once per process and,
    with a cache folder, once per machine."""
    key = build_key(name, reference_dir)
    if key in _LOADED:
        return _LOADED[key]
    if cache_dir is None:
        _LOADED[key] = compute()
        return _LOADED[key]
    import torch
    folder = Path(cache_dir) / "reference"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.pt"
    with open(folder / f"{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        value = None
        if path.is_file():
            try:
                value = torch.load(path, weights_only=True)
            except Exception:   # a damaged entry (a full disk, say) is computed again
                value = None
        if value is None:
            value = compute()
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            torch.save(value, tmp)
            os.replace(tmp, path)
    _LOADED[key] = value
    return value
