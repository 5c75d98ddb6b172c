"""A Dask cluster to grade on: a running scheduler, or Slurm jobs started through dask-jobqueue.

The grader (the Dask client) stays on the machine staff run it on and writes every record;
workers only run ``engines.dask_task`` on paths they can read (a shared folder: the cluster's
home or scratch). What the cluster must be set up to do, and why (measured in the course's
notes on Dask): one thread per worker process, so slots are processes; workers that may start
children (``daemon: false``); the kernel's own thread count set by the grader, not inherited
from the nanny; memory limited by each kernel's sandbox (Dask counts only the worker process);
listeners on the addresses given, not on every interface.

Slurm config (TOML), every key but ``account`` optional::

    [slurm]
    account = "pr_123_general"      # sbatch -A
    partition = "cpu"               # sbatch -p
    cores = 4                       # worker processes per job (1 thread each)
    memory = "32GB"                 # per job: cores x (kernel memory limit + about 1 GB)
    walltime = "04:00:00"
    max_jobs = 10                   # adapt between 0 and this many jobs
    python = "/home/me/grader-checkout/.venv/bin/python"
    prologue = ["module purge"]
    local_directory = "$SLURM_TMPDIR"
    interface = "ib0"               # the network the nodes reach the grader on
    extra_directives = ["--nodes=1"]
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

# Set before distributed is imported: workers may start children; no 0.0.0.0 dashboard.
WORKER_CONFIG = {"distributed.worker.daemon": False,
                 "distributed.scheduler.worker-saturation": 1.0}


class ClusterError(ValueError):
    """A cluster setting that cannot work; the message says what to change."""


@dataclass(frozen=True)
class SlurmConfig:
    account: str
    partition: str | None = None
    cores: int = 4
    memory: str = "32GB"
    walltime: str = "04:00:00"
    max_jobs: int = 10
    python: str = "python3"
    prologue: tuple[str, ...] = ()
    local_directory: str = "$SLURM_TMPDIR"
    interface: str | None = None
    extra_directives: tuple[str, ...] = field(default_factory=tuple)


def load_slurm_config(path: Path) -> SlurmConfig:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ClusterError(f"{path}: cannot read the Slurm config: {e}") from None
    table = data.get("slurm")
    if not isinstance(table, dict):
        raise ClusterError(f"{path}: expected a [slurm] table (see grader/cluster.py or the README)")
    known = set(SlurmConfig.__dataclass_fields__)
    unknown = sorted(set(table) - known)
    if unknown:
        raise ClusterError(f"{path}: unknown key(s) in [slurm]: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if not isinstance(table.get("account"), str) or not table["account"]:
        raise ClusterError(f"{path}: [slurm].account is required (the Slurm account to charge, sbatch -A)")
    for key in ("cores", "max_jobs"):
        if key in table and (not isinstance(table[key], int) or table[key] < 1):
            raise ClusterError(f"{path}: [slurm].{key} must be a whole number of at least 1, got {table[key]!r}")
    for key in ("prologue", "extra_directives"):
        if key in table:
            if not isinstance(table[key], list) or not all(isinstance(v, str) for v in table[key]):
                raise ClusterError(f"{path}: [slurm].{key} must be an array of strings")
            table[key] = tuple(table[key])
    return SlurmConfig(**table)


def slurm_cluster(cfg: SlurmConfig, scheduler_host: str | None = None):
    """A dask-jobqueue SLURMCluster from ``cfg`` (nothing is submitted until it scales)."""
    import dask
    dask.config.set(WORKER_CONFIG)
    from dask_jobqueue import SLURMCluster
    scheduler = {"dashboard_address": None}
    if scheduler_host:
        scheduler["host"] = scheduler_host
    elif cfg.interface:
        scheduler["interface"] = cfg.interface
    return SLURMCluster(
        cores=cfg.cores, processes=cfg.cores, memory=cfg.memory, walltime=cfg.walltime,
        account=cfg.account, queue=cfg.partition, job_name="grader", python=cfg.python,
        local_directory=cfg.local_directory,
        # Workers start children (the sandboxes): not daemonic.
        job_script_prologue=list(cfg.prologue) + ["export DASK_DISTRIBUTED__WORKER__DAEMON=False"],
        job_extra_directives=list(cfg.extra_directives),
        # Retire before the walltime: the task running then is re-run elsewhere, not lost.
        # The grader (torch with it) is imported as the worker starts, not in its first task.
        worker_extra_args=["--lifetime", _lifetime(cfg.walltime), "--lifetime-stagger", "4m",
                           "--preload", "grader.engines"],
        scheduler_options=scheduler)


def _lifetime(walltime: str) -> str:
    """The walltime less 10 minutes (at least 5), as Dask writes durations."""
    bits = [int(b) for b in walltime.replace("-", ":").split(":")]
    while len(bits) < 3:
        bits.insert(0, 0)
    days = bits[0] if len(bits) == 4 else 0
    h, m, s = bits[-3:]
    minutes = max(5, days * 1440 + h * 60 + m + s // 60 - 10)
    return f"{minutes}m"


def connect(scheduler: str | None = None, slurm: Path | None = None):
    """(client, close) for ``--scheduler tcp://HOST:PORT`` or ``--slurm CONFIG``."""
    import dask
    dask.config.set(WORKER_CONFIG)
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError("Dask is not installed: install the grader with its 'cluster' extra "
                           "(pip install -e '.[cluster]' in the checkout)") from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as e:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {e}; start it with "
                               "'dask scheduler --host HOST --port 8786'") from None
        return client, client.close
    cfg = load_slurm_config(slurm)
    cluster = slurm_cluster(cfg)
    cluster.adapt(minimum_jobs=0, maximum_jobs=cfg.max_jobs)
    client = Client(cluster)

    def close() -> None:
        client.close()
        cluster.close()
    return client, close


def check_workers(client, timeout_s: float = 0) -> int:
    """How many workers the cluster has now (waiting up to ``timeout_s`` for the first)."""
    if timeout_s:
        try:
            client.wait_for_workers(1, timeout=timeout_s)
        except Exception:
            pass
    return len(client.scheduler_info().get("workers", {}))
