"""The command line's arguments: every subcommand, its flags and their help."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RUBRIC = REPO / "rubrics" / "hw2.toml"
DEFAULT_SUBMISSIONS = REPO / "sample_submissions"
DEFAULT_TABLES = REPO / "sample_tables"      # the bundled samples' tables, used when grading them by default


def build_parser(commands: dict[str, Callable[[argparse.Namespace], int]]) -> argparse.ArgumentParser:
    """The command line; ``commands`` maps each subcommand to the function that runs it."""
    ap = argparse.ArgumentParser(prog="grader", description="Sandboxed auto-grader for notebook homework.")
    sub = ap.add_subparsers(dest="command", required=True)

    g = sub.add_parser(
        "grade", help="grade a folder of net_id.zip files (default: the bundled samples)",
        description="Grade a folder of net_id.zip files, or one zip. Submission times, extensions and staff "
                    "scores are read only from tables staff name: --tables DIR (a course folder holding "
                    "submission_times.csv, extensions.csv and/or staff_scores.csv) or one flag per file, "
                    "which wins over the folder's file. Tables are never read from the submissions folder: "
                    "files of those names beside the zips are ignored with a warning, and a table inside "
                    "the submissions folder is refused. The summary at the end names the tables used.")
    g.add_argument("submissions", nargs="?", type=Path, default=None,
                   help=f"folder of zips, one zip, or a Brightspace download of the assignment (its zip or "
                        f"extracted folder) (default: {DEFAULT_SUBMISSIONS}, with --tables {DEFAULT_TABLES})")
    g.add_argument("--classlist", type=Path, metavar="CSV",
                   help="Brightspace class list export (Username, OrgDefinedId, First Name, Last Name): finds "
                        "the net id of a student whose own zip name does not say it, by display name")
    g.add_argument("--rubric", type=Path, default=DEFAULT_RUBRIC, help="rubric TOML (default: %(default)s)")
    g.add_argument("--out", type=Path, default=Path("grading-output"), help="output folder (default: %(default)s)")
    g.add_argument("--tables", type=Path, metavar="DIR",
                   help="course tables folder: its submission_times.csv, extensions.csv and staff_scores.csv "
                        "are used, each one that exists (default: none)")
    g.add_argument("--times", type=Path, help="CSV net_id,submitted_at (default: DIR/submission_times.csv of "
                   "--tables, else none: zip modification times)")
    g.add_argument("--extensions", type=Path, help="CSV net_id,extension_hours (default: DIR/extensions.csv of "
                   "--tables, else none)")
    g.add_argument("--staff-scores", type=Path, help="CSV net_id,<staff item ids>... (default: "
                   "DIR/staff_scores.csv of --tables, else none: staff items pending)")
    g.add_argument("--overrides", type=Path, help="CSV net_id,item,points,comment: staff's points for any item, "
                   "which win (default: DIR/overrides.csv of --tables, else none)")
    g.add_argument("--cell-timeout", type=float, help="override the rubric's per-cell timeout (seconds)")
    g.add_argument("--notebook-timeout", type=float, help="override the rubric's per-notebook wall-clock limit (seconds)")
    g.add_argument("--device", default="auto", help="where student kernels run: auto (a GPU when the machine has "
                   "one and torch is a CUDA build), cpu, or cuda:N (default: %(default)s)")
    g.add_argument("--jobs", type=int, help="worker processes on this machine (default: as many kernels as the "
                   "cores hold at the rubric's threads per kernel, and the memory at its limit per kernel)")
    g.add_argument("--scheduler", metavar="ADDRESS", help="grade on a running Dask cluster, e.g. tcp://HOST:8786 "
                   "(paths must be readable by its workers: a shared folder)")
    g.add_argument("--slurm", type=Path, metavar="CONFIG", help="grade on Slurm: workers are started as jobs by "
                   "dask-jobqueue from this TOML config ([slurm] account, partition, cores, memory, walltime, ...)")
    g.add_argument("--kernels-per-gpu", type=int, default=1, help="on a machine with GPUs: kernels sharing one "
                   "GPU at a time (default: %(default)s); worker k gets GPU k mod the number of GPUs")
    g.add_argument("--only", nargs="+", metavar="NET_ID", help="grade only these net_ids (or zip names); every "
                   "other zip keeps its record")
    g.add_argument("--force", action="store_true", help="grade again from scratch: no record, kept run or "
                   "cached run is reused (with --only: just those)")
    g.add_argument("--no-resume", action="store_true", help="grade every zip again even when an up-to-date record "
                   "exists (kept runs are still judged again without a kernel where they stand; --force does not)")
    g.add_argument("--keep-work", action="store_true", help="keep the per-submission work folders (for debugging)")
    g.set_defaults(func=commands["grade"])

    v = sub.add_parser("validate", help="grade the assignment's solution and release notebooks against the rubric")
    v.add_argument("--rubric", type=Path, default=DEFAULT_RUBRIC)
    v.add_argument("--seed", type=int, help="fixed probe seed (default: a fresh secret seed)")
    v.add_argument("--cache-dir", type=Path, help="reuse identical notebook runs kept in this folder")
    v.add_argument("--device", default="auto", help="auto, cpu or cuda:N (default: %(default)s)")
    v.add_argument("--jobs", type=int, help="grade the solution and the release side by side (2) or one after "
                   "the other (1); default: 2 where the machine's cores and memory hold two kernels")
    v.set_defaults(func=commands["validate"])

    e = sub.add_parser("environment", help="the course's packages in the student kernel: list or check them")
    e.add_argument("--rubric", type=Path, action="append", help="rubric TOML; repeat for several (default: %s)" % DEFAULT_RUBRIC)
    e.add_argument("--requirements", action="store_true", help="print the pip requirements (make installs them)")
    e.set_defaults(func=commands["environment"])

    r = sub.add_parser("report", help="rebuild grades.csv and feedback from records, merging staff scores")
    r.add_argument("--out", type=Path, default=Path("grading-output"))
    r.add_argument("--rubric", type=Path, default=DEFAULT_RUBRIC)
    r.add_argument("--tables", type=Path, metavar="DIR", help="course tables folder: its staff_scores.csv is merged")
    r.add_argument("--staff-scores", type=Path, help="CSV net_id,<staff item ids>... (wins over --tables)")
    r.add_argument("--overrides", type=Path, help="CSV net_id,item,points,comment (wins over --tables)")
    r.set_defaults(func=commands["report"])

    c = sub.add_parser("check", help="a student's check of their zip before submitting: names, the PDF, "
                       "that every notebook runs, and the public checks",
                       description="Run your zip as the grader will: its name and files, the PDF, every "
                                   "notebook from top to bottom in the sandbox, and the rubric's public items. "
                                   "Prints what to fix; exits 1 when there is something, 0 when there is not.")
    c.add_argument("zip", type=Path)
    c.add_argument("--rubric", type=Path, default=DEFAULT_RUBRIC)
    c.add_argument("--device", default="auto", help="auto, cpu or cuda:N (default: %(default)s)")
    c.add_argument("--cache-dir", type=Path, help="keep the grader's data sets here between checks")
    c.set_defaults(func=commands["check"])

    x = sub.add_parser("export", help="grades out of records: a Brightspace grade-import CSV or Gradescope results.json",
                       description="Write what an LMS takes in from the records of --out (run 'grader report' "
                                   "first to merge staff scores). Records without a resolved student, two "
                                   "records of one net id, the grader's own failures and (unless "
                                   "--with-pending) records with staff items pending are left out and listed.")
    x.add_argument("to", choices=("brightspace", "gradescope"))
    x.add_argument("--out", type=Path, default=Path("grading-output"), help="the grading output folder")
    x.add_argument("--rubric", type=Path, default=DEFAULT_RUBRIC)
    x.add_argument("--file", type=Path, help="where to write (default: OUT/brightspace_import.csv, OUT/gradescope/)")
    x.add_argument("--item", help="the Brightspace grade item's name (default: the rubric's name)")
    x.add_argument("--max-points", type=float, help="create the grade item on import, with this maximum")
    x.add_argument("--with-pending", action="store_true", help="also upload records whose staff items are pending")
    x.set_defaults(func=commands["export"])
    return ap
