"""The course's environment in the student kernel: declared packages, their check, and the
hidden cell that makes Colab code run (``grader/kernel_env``).

The rubric's ``execution.packages`` lists pip requirements (``"torchvision==0.28.0"``).
``make`` installs them (``grader environment --requirements``); the sandbox preflight runs
``PACKAGES_CHECK_CODE`` in a real sandboxed kernel and refuses to grade when a declared
package is missing or has another version, before any student is graded.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

ENV_DIR = Path(__file__).resolve().parent / "kernel_env"
ENV_MOUNT = "/grader/env"
REPORT_MARK = "__GRADER_PACKAGES__"


@dataclass(frozen=True)
class Package:
    requirement: str              # as written in the rubric, e.g. "torchvision==0.28.0"
    name: str                     # the distribution's canonical name, e.g. "torchvision"
    specifier: str                # e.g. "==0.28.0"; "" for any version


def parse_packages(requirements: tuple[str, ...], where: str = "execution.packages") -> tuple[Package, ...]:
    """Raise ValueError naming the entry when one is not a plain pip requirement."""
    out = []
    for i, text in enumerate(requirements):
        try:
            req = Requirement(text)
        except InvalidRequirement as e:
            raise ValueError(f"{where}[{i}]: {text!r} is not a pip requirement ({e})") from None
        if req.url or req.marker or req.extras:
            raise ValueError(f"{where}[{i}]: {text!r}: only a name and a version, e.g. \"torchvision==0.28.0\"")
        out.append(Package(text, canonicalize_name(req.name), str(req.specifier)))
    names = [p.name for p in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{where}: {', '.join(dup)} listed more than once")
    return tuple(out)


def install_code(cuda_fallback: bool) -> str:
    """The hidden cell run before a notebook's first cell (see kernel_env/_grader_env.py).
    Loaded from its file by path, so a module a notebook could plant under that name is not it."""
    return ("import importlib.util as _gu\n"
            f"_gs = _gu.spec_from_file_location('_grader_env', {ENV_MOUNT + '/_grader_env.py'!r})\n"
            "_ge = _gu.module_from_spec(_gs)\n"
            "_gs.loader.exec_module(_ge)\n"
            f"_ge.install(cuda_fallback={bool(cuda_fallback)!r})\n"
            "del _gu, _gs, _ge\n")


# Run in a sandboxed kernel by the preflight: which version of each declared distribution is
# installed, and whether its top-level modules import.
PACKAGES_CHECK_CODE = r'''
def _grader_packages(names):
    import importlib, importlib.metadata as md, json
    tops = {}
    for top, dists in md.packages_distributions().items():
        for d in dists:
            tops.setdefault(d.lower().replace("_", "-").replace(".", "-"), []).append(top)
    report = {}
    for name in names:
        entry = {"version": None, "modules": [], "error": None}
        try:
            entry["version"] = md.version(name)
        except md.PackageNotFoundError:
            entry["error"] = "not installed"
            report[name] = entry
            continue
        modules = sorted(t for t in tops.get(name, []) if not t.startswith("_") and "." not in t)
        entry["modules"] = modules
        for top in modules[:3]:
            try:
                importlib.import_module(top)
            except Exception as e:
                entry["error"] = f"import {top} failed: {type(e).__name__}: {e}"[:300]
                break
        report[name] = entry
    print("%(mark)s" + json.dumps(report))
_grader_packages(%(names)s)
del _grader_packages
'''


def packages_check_code(packages: tuple[Package, ...]) -> str:
    return PACKAGES_CHECK_CODE % {"mark": REPORT_MARK, "names": json.dumps([p.name for p in packages])}


def read_packages_report(stdout: str) -> dict | None:
    for line in stdout.splitlines():
        if line.startswith(REPORT_MARK):
            try:
                value = json.loads(line[len(REPORT_MARK):])
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def check_packages(packages: tuple[Package, ...], report: dict | None) -> tuple[list[str], dict[str, str]]:
    """(problems, {name: installed version}) from a preflight report."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    if report is None:
        return ["the kernel did not report its packages"], {}
    problems, found = [], {}
    for p in packages:
        entry = report.get(p.name) or {}
        version = entry.get("version")
        if version is None:
            problems.append(f"{p.requirement}: not installed in the kernel's environment")
            continue
        found[p.name] = str(version)
        try:
            ok = not p.specifier or SpecifierSet(p.specifier).contains(Version(str(version)), prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            problems.append(f"{p.requirement}: the kernel has {p.name} {version}")
        elif entry.get("error"):
            problems.append(f"{p.requirement}: {entry['error']}")
    return problems, found


_MISSING_MODULE = re.compile(r"No module named '([^']+)'")


def missing_module(error_value: str | None) -> str | None:
    """The module a ModuleNotFoundError names, or None."""
    m = _MISSING_MODULE.search(error_value or "")
    return m.group(1) if m else None
