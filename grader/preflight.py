"""Before a batch: a trivial notebook in the sandbox proves it isolated, working and complete."""
from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

import nbformat

from grader.sandbox import SandboxError, find_tool
from grader.execute import execute_notebook
from grader.run_types import ExecSettings


class EnvironmentIncomplete(SandboxError):
    """A package the rubric declares for the course's environment is missing or has another version."""


def preflight(settings: ExecSettings | None = None, packages: tuple = ()) -> dict:
    """Run a trivial notebook in the sandbox; raise SandboxError unless it is isolated and works,
    and EnvironmentIncomplete unless every declared package (grader/environment.py) is importable
    there in its declared version."""
    from grader.environment import check_packages, packages_check_code, read_packages_report

    settings = settings or ExecSettings()
    for tool in ("bwrap", "prlimit"):
        if find_tool(tool) is None:
            raise SandboxError(f"{tool} is not installed; the sandbox cannot run "
                               "(apt-get install -y bubblewrap util-linux)")
    quick = dataclasses.replace(settings, cell_timeout_s=120, notebook_timeout_s=240)
    with tempfile.TemporaryDirectory(prefix="grader-preflight-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        nb_path = Path(tmp) / "preflight.ipynb"
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("import os\nprint(os.getuid(), 6 * 7)")]
        if packages:
            nb.cells.append(nbformat.v4.new_code_cell(packages_check_code(packages)))
        nbformat.write(nb, str(nb_path))
        run = execute_notebook(nb_path, work, quick)
        if run.status != "completed":
            raise SandboxError(f"sandbox preflight failed ({run.status}): {run.message}")
        found: dict[str, str] = {}
        if packages:
            out = nbformat.read(str(run.executed_path), as_version=4) if run.executed_path else None
            text = "".join(o.get("text", "") for o in (out.cells[1].outputs if out else [])
                           if o.get("output_type") == "stream")
            problems, found = check_packages(packages, read_packages_report(text))
            if problems:
                missing = " ".join(f"'{p.requirement}'" for p in packages)
                raise EnvironmentIncomplete(
                    "the course's environment is incomplete in the kernel: " + "; ".join(problems)
                    + f". Install the rubric's packages (make setup does it: {sys.executable} -m pip install {missing})")
    return {"status": run.status, "seconds": round(run.seconds, 2), "limits": run.limits, "packages": found}
