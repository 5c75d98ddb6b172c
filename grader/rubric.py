"""The assignment as data: load and validate a rubric TOML file into typed objects.

Every error names the offending key and says what is expected, so that staff
can fix a rubric without reading grader code.
"""
from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from grader.environment import Package, parse_packages
from grader.items import Fingerprint, Item, RubricError, Subcheck
from grader.toml_table import REQUIRED, Table, top_table

PART_KINDS = ("pdf", "notebook")
PENALTY_RULES = ("sum_capped",)
COLAB_MODES = ("neutralize", "keep")
LIMIT_MODES = ("scaled", "fixed")
RELEASE_EXPECTATIONS = ("zero", "full", "any")


@dataclass(frozen=True)
class Deadline:
    due: datetime                 # aware, in the course time zone
    timezone: str
    late_window_hours: float
    late_penalty_pct: float


@dataclass(frozen=True)
class Penalties:
    rule: str                     # how penalties combine; see score.combine_penalties
    naming_pct: float
    not_executable_pct: float


@dataclass(frozen=True)
class IntakeSettings:
    ignore: tuple[str, ...]
    max_members: int
    max_total_mb: float
    max_member_mb: float
    netid_pattern: str
    netid_hint: str


@dataclass(frozen=True)
class ExecutionSettings:
    cell_timeout_s: float         # nominal: on the reference machine (grader/limits.py)
    notebook_timeout_s: float
    probe_timeout_s: float
    memory_mb: int
    pids_max: int
    tmp_mb: int
    colab: str
    disk_mb: int                  # work folder of one notebook, watched; the kernel is killed beyond
    max_files: int
    file_mb: int                  # largest single file a notebook may write (RLIMIT_FSIZE)
    threads: int                  # OMP/MKL threads of a student kernel: predictable and fair on a shared machine
    # Errors that mean "the notebook's own test failed" (a wrong answer, scored by the items),
    # not "the code cannot be executed": recorded and shown, but no execution penalty.
    test_failures: tuple[str, ...] = ("AssertionError", "GradcheckError")
    # The course's libraries in the kernel: pip requirements, installed by `make`, checked by
    # the sandbox preflight (grader/environment.py).
    packages: tuple[Package, ...] = ()
    limits: str = "scaled"        # "scaled": the nominal limits times the machine's measured slowness
    limit_slack: float = 1.0
    limit_max_scale: float = 4.0
    interrupt_grace_s: float = 30.0
    # The largest message the kernel may send the grader (one ZMQ frame); a larger one is a
    # protocol violation: the kernel is stopped. Kept outputs are far smaller (4 MB per image).
    max_message_mb: int = 32


@dataclass(frozen=True)
class Mount:
    source: str                   # "<dataset name>" prepared by the reference package, or a path under reference_dir
    target: str                   # read-only inside the sandbox: an absolute path, or one relative to the notebook's folder


@dataclass(frozen=True)
class Capture:
    """An object the checks address by ``name``, found as the template's own test sees it: the
    first argument of the notebook's last ``call(...)``, else what the cell that calls it left
    bound to ``fallback`` (grader/probe/capture.py)."""
    name: str
    call: str
    fallback: str | None = None


@dataclass(frozen=True)
class Reseed:
    """Reseed Python's, NumPy's and torch's generators, hidden, just before the first code cell
    matching ``before``: a trained result then does not depend on what earlier cells drew."""
    before: str                   # regex of the cell's code
    seed: int = 0


@dataclass(frozen=True)
class Part:
    id: str
    file: str
    kind: str
    points: float
    extra_credit: float = 0.0
    support: tuple[str, ...] = ()          # paths under reference_dir copied beside the notebook
    env: tuple[tuple[str, str], ...] = ()
    mounts: tuple[Mount, ...] = ()
    python_path: tuple[str, ...] = ()      # folders beside the notebook whose modules also import flat
    captures: tuple[Capture, ...] = ()
    reseed: Reseed | None = None


@dataclass(frozen=True)
class Rubric:
    name: str
    title: str
    path: Path
    digest: str                    # sha256 of the rubric file: records say which rubric graded them
    reference_dir: Path
    reference_package: str | None
    solution_dir: Path             # complete notebooks: `grader validate` expects full marks
    release_dir: Path              # what students get: `grader validate` checks Item.release
    datasets: tuple[tuple[str, str], ...]   # (name, "module:function") preparing grader-held data
    deadline: Deadline
    penalties: Penalties
    intake: IntakeSettings
    execution: ExecutionSettings
    parts: tuple[Part, ...]
    items: tuple[Item, ...]

    @property
    def required_files(self) -> tuple[str, ...]:
        return tuple(p.file for p in self.parts)

    def part(self, part_id: str) -> Part:
        for p in self.parts:
            if p.id == part_id:
                return p
        raise KeyError(part_id)

    def items_of(self, part_id: str) -> list[Item]:
        return [i for i in self.items if i.part == part_id]

    @property
    def total_points(self) -> float:
        return sum(p.points for p in self.parts)

    @property
    def total_extra(self) -> float:
        return sum(p.extra_credit for p in self.parts)


def load_rubric(path: Path | str, kinds: Mapping[str, Any] | None = None) -> Rubric:
    """Load ``path`` and validate it against ``kinds`` (name -> check kind, each validating its
    own items' params); by default the grader's registry, ``grader.checks.KINDS``. The check
    kinds never import this module, so the registry is looked up here only when needed."""
    path = Path(path).resolve()
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise RubricError(f"cannot read rubric {path}: {e.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RubricError(f"{path.name}: not valid TOML: {e}") from None
    if kinds is None:
        from grader.checks import KINDS as kinds
    known_kinds = tuple(kinds)

    a = top_table(data, "assignment")
    name = a.str("name", REQUIRED)
    title = a.str("title", name)
    reference_dir = (path.parent / a.str("reference_dir", ".")).resolve()
    if not reference_dir.is_dir():
        raise RubricError(f"assignment.reference_dir: folder {reference_dir} does not exist")
    reference_package = a.str("reference_package")
    solution_dir = reference_dir / a.str("solution_dir", "solution")
    release_dir = reference_dir / a.str("release_dir", "release")
    datasets = []
    for key, value in a.table("datasets", {}).data.items():
        if not isinstance(value, str) or ":" not in value:
            raise RubricError(f"assignment.datasets.{key}: expected \"module:function\", got {value!r}")
        datasets.append((key, value))
    a.no_unknown_keys()

    d = top_table(data, "deadline")
    tzname = d.str("timezone", REQUIRED)
    try:
        tz = ZoneInfo(tzname)
    except (ZoneInfoNotFoundError, ValueError):
        raise RubricError(f"deadline.timezone: unknown time zone {tzname!r}; expected e.g. \"America/New_York\"") from None
    due_text = d.str("due", REQUIRED)
    try:
        due = datetime.fromisoformat(due_text)
    except ValueError:
        raise RubricError(f"deadline.due: expected an ISO date-time such as \"2025-10-05T23:59:00\", got {due_text!r}") from None
    due = due.replace(tzinfo=tz) if due.tzinfo is None else due.astimezone(tz)
    deadline = Deadline(due, tzname, d.num("late_window_hours", 24), d.num("late_penalty_pct", 20))
    d.no_unknown_keys()

    p = top_table(data, "penalties")
    penalties = Penalties(p.one_of("rule", PENALTY_RULES, "sum_capped"),
                          p.num("naming_pct", 10), p.num("not_executable_pct", 20))
    for key in ("naming_pct", "not_executable_pct"):
        if getattr(penalties, key) > 100:
            raise RubricError(f"penalties.{key}: expected a percentage between 0 and 100")
    p.no_unknown_keys()

    i = Table(data.get("intake", {}), "intake")
    intake = IntakeSettings(
        ignore=i.strs("ignore", ("__MACOSX/*", ".DS_Store", "*/.DS_Store", "._*", "*/._*", "Thumbs.db",
                                 "desktop.ini", ".ipynb_checkpoints/*", "*/.ipynb_checkpoints/*")),
        max_members=int(i.num("max_members", 500, minimum=1)),
        max_total_mb=i.num("max_total_mb", 300),
        max_member_mb=i.num("max_member_mb", 200),
        netid_pattern=i.str("netid_pattern", r"[a-z]{2,4}[0-9]{1,6}"),
        netid_hint=i.str("netid_hint", "your student login, e.g. 'abc123.zip'"),
    )
    i.no_unknown_keys()

    e = Table(data.get("execution", {}), "execution")
    execution = ExecutionSettings(
        cell_timeout_s=e.num("cell_timeout_s", 600),
        notebook_timeout_s=e.num("notebook_timeout_s", 1800),
        probe_timeout_s=e.num("probe_timeout_s", 300),
        memory_mb=int(e.num("memory_mb", 4096, minimum=512)),
        pids_max=int(e.num("pids_max", 256, minimum=8)),
        tmp_mb=int(e.num("tmp_mb", 512, minimum=16)),
        colab=e.one_of("colab", COLAB_MODES, "neutralize"),
        disk_mb=int(e.num("disk_mb", 2048, minimum=16)),
        max_files=int(e.num("max_files", 20000, minimum=10)),
        file_mb=int(e.num("file_mb", 512, minimum=1)),
        threads=int(e.num("threads", 1, minimum=1)),
        test_failures=e.strs("test_failures", ("AssertionError", "GradcheckError")),
        packages=_packages(e),
        limits=e.one_of("limits", LIMIT_MODES, "scaled"),
        limit_slack=e.num("limit_slack", 1.0, minimum=1.0),
        limit_max_scale=e.num("limit_max_scale", 4.0, minimum=1.0),
        interrupt_grace_s=e.num("interrupt_grace_s", 30.0, minimum=1.0),
        max_message_mb=int(e.num("max_message_mb", 32, minimum=8)),
    )
    e.no_unknown_keys()

    parts = []
    for t in Table(data, "").tables("parts"):
        env = t.table("env", {})
        for k, v in env.data.items():
            if not isinstance(v, str):
                raise RubricError(f"{t.where}.env.{k}: expected a string, got {v!r}")
        mounts = []
        for m in t.tables("mounts"):
            target = m.str("target", REQUIRED)
            if not _safe_inside(target):
                raise RubricError(f"{m.where}.target: expected an absolute path inside the sandbox or a folder "
                                  f"name beside the notebook (e.g. \"data_folder\"), got {target!r}")
            mounts.append(Mount(m.str("source", REQUIRED), target))
            m.no_unknown_keys()
        captures = []
        for c in t.tables("captures"):
            cap = Capture(c.str("name", REQUIRED), c.str("call", REQUIRED), c.str("fallback"))
            for key in ("name", "call", "fallback"):
                value = getattr(cap, key)
                if value is not None and not value.isidentifier():
                    raise RubricError(f"{c.where}.{key}: expected a Python name, got {value!r}")
            c.no_unknown_keys()
            captures.append(cap)
        _unique([c.name for c in captures], f"{t.where}.captures[].name")
        reseed = None
        if "reseed" in t.data:
            r = t.table("reseed")
            reseed = Reseed(r.str("before", REQUIRED), int(r.num("seed", 0)))
            try:
                re.compile(reseed.before)
            except re.error:
                raise RubricError(f"{r.where}.before: not a valid regular expression: {reseed.before!r}") from None
            r.no_unknown_keys()
        python_path = t.strs("python_path")
        for entry in python_path:
            if entry.startswith("/") or not _safe_inside(entry):
                raise RubricError(f"{t.where}.python_path: expected folders beside the notebook (e.g. \"res\"), "
                                  f"got {entry!r}")
        part = Part(id=t.str("id", REQUIRED), file=t.str("file", REQUIRED),
                    kind=t.one_of("kind", PART_KINDS, "notebook"), points=t.num("points", REQUIRED),
                    extra_credit=t.num("extra_credit", 0), support=t.strs("support"),
                    env=tuple(sorted(env.data.items())), mounts=tuple(mounts), python_path=python_path,
                    captures=tuple(captures), reseed=reseed)
        for s in part.support:
            if not (reference_dir / s).exists():
                raise RubricError(f"{t.where}.support: {s!r} not found under {reference_dir}")
        t.no_unknown_keys()
        parts.append(part)
    if not parts:
        raise RubricError("[[parts]]: the rubric declares no parts; expected at least one")
    _unique([p.id for p in parts], "parts[].id")
    _unique([p.file for p in parts], "parts[].file")
    dataset_names = {n for n, _ in datasets}
    for part in parts:
        for m in part.mounts:
            if m.source not in dataset_names and not (reference_dir / m.source).exists():
                raise RubricError(f"parts[{part.id}].mounts: source {m.source!r} is neither an "
                                  f"assignment.datasets name nor a path under {reference_dir}")

    part_ids = {p.id for p in parts}
    items = []
    for t in Table(data, "").tables("items"):
        kind = t.str("kind", REQUIRED)
        if kind not in known_kinds:
            raise RubricError(f"{t.where}.kind: unknown check kind {kind!r}; expected one of {', '.join(known_kinds)}")
        part_id = t.str("part", REQUIRED)
        if part_id not in part_ids:
            raise RubricError(f"{t.where}.part: {part_id!r} is not a declared part ({', '.join(sorted(part_ids))})")
        params = t.table("params", {}).data
        points = t.num("points", REQUIRED)
        reference = t.str("reference")
        if reference is not None and reference != "" and not _is_ref(reference):
            raise RubricError(f"{t.where}.reference: expected \"package.module:name\", got {reference!r}")
        subchecks = _subchecks(t, points)
        fingerprints = _fingerprints(t, subchecks)
        items.append(Item(id=t.str("id", REQUIRED), part=part_id, kind=kind,
                          title=t.str("title", REQUIRED), points=points,
                          extra=t.bool("extra", False), target=t.str("target"), params=params,
                          reference=reference or None, subchecks=subchecks, fingerprints=fingerprints,
                          where=t.where, release=t.one_of("release", RELEASE_EXPECTATIONS, "zero"),
                          public=t.bool("public", False)))
        t.no_unknown_keys()
    _unique([i.id for i in items], "items[].id")
    public = {i.id for i in items if i.public and i.kind != "staff"}     # what `grader check` runs
    for i in items:
        hidden = [n for n in i.params.get("requires", []) if n not in public] if i.public else []
        if hidden:
            raise RubricError(f"{i.where}.public: a public item is judged by a student's `grader check`, where "
                              f"only public items run, but it requires {', '.join(hidden)}; make those public "
                              "(and automatic) too, or this one not")
    _validate_kinds(items, kinds)

    for part in parts:
        base = sum(i.points for i in items if i.part == part.id and not i.extra)
        extra = sum(i.points for i in items if i.part == part.id and i.extra)
        if items and abs(base - part.points) > 1e-9:
            raise RubricError(f"items of part {part.id!r}: points sum to {base:g}, expected parts.points = {part.points:g}")
        if items and abs(extra - part.extra_credit) > 1e-9:
            raise RubricError(f"extra items of part {part.id!r}: points sum to {extra:g}, "
                              f"expected parts.extra_credit = {part.extra_credit:g}")
    Table(data, "").no_unknown_keys(also=("assignment", "deadline", "penalties", "intake", "execution", "parts", "items"))

    return Rubric(name=name, title=title, path=path, digest=hashlib.sha256(raw).hexdigest(),
                  reference_dir=reference_dir, reference_package=reference_package,
                  solution_dir=solution_dir, release_dir=release_dir,
                  datasets=tuple(datasets), deadline=deadline, penalties=penalties, intake=intake,
                  execution=execution, parts=tuple(parts), items=tuple(items))


def _packages(e: Table) -> tuple[Package, ...]:
    try:
        return parse_packages(e.strs("packages"))
    except ValueError as err:
        raise RubricError(str(err)) from None


def _safe_inside(path: str) -> bool:
    parts = [p for p in path.split("/") if p]
    return bool(parts) and not any(p in (".", "..") for p in parts)


def _is_ref(value: str) -> bool:
    module, _, name = value.partition(":")
    return bool(name) and all(p.isidentifier() for p in module.split(".")) and \
        all(p.isidentifier() for p in name.split("."))


def _subchecks(t: Table, points: float) -> tuple[Subcheck, ...]:
    subs = []
    for s in t.tables("subchecks"):
        name = s.str("name", REQUIRED)
        if not name or any(c.isspace() for c in name):
            raise RubricError(f"{s.where}.name: expected a name without spaces, got {name!r}")
        subs.append(Subcheck(name, s.num("points", REQUIRED), s.str("what", "")))
        s.no_unknown_keys()
    _unique([s.name for s in subs], f"{t.where}.subchecks[].name")
    if subs and abs(sum(s.points for s in subs) - points) > 1e-9:
        raise RubricError(f"{t.where}.subchecks: points sum to {sum(s.points for s in subs):g}, "
                          f"expected the item's points = {points:g}")
    return tuple(subs)


def _fingerprints(t: Table, subs: tuple[Subcheck, ...]) -> tuple[Fingerprint, ...]:
    out = []
    names = {s.name for s in subs}
    for f in t.tables("fingerprints"):
        key = "variant" if "variant" in f.data or "name" not in f.data else "name"
        variant = f.str(key, REQUIRED)
        if not _is_ref(variant):
            raise RubricError(f"{f.where}.{key}: expected \"package.module:name\", got {variant!r}")
        only = f.strs("subchecks")
        for n in only:
            if n not in names:
                raise RubricError(f"{f.where}.subchecks: {n!r} is not a sub-check of this item")
        out.append(Fingerprint(variant, f.str("message", REQUIRED), only))
        f.no_unknown_keys()
    return tuple(out)


def _validate_kinds(items: list[Item], kinds: Mapping[str, Any]) -> None:
    """Each check kind checks its own params, so a bad item fails when the rubric loads."""
    for item in items:
        validate = getattr(kinds.get(item.kind), "validate", None)
        if validate is not None:
            validate(item)


def _unique(values: list[str], where: str) -> None:
    seen = set()
    for v in values:
        if v in seen:
            raise RubricError(f"{where}: {v!r} is declared twice")
        seen.add(v)
