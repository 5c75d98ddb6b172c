"""Attacks on what grades are made of besides the notebooks: the control tables (submission
times, extensions, staff scores) and the record files, graded through the real
``grader grade`` (tests/test_hostile_control.py).

Each run is one ``grader grade`` of a folder of zips. ``beside`` are table files planted in
the submissions folder, where anything a student uploads can land; ``named`` are the tables
staff keep in a folder of their own (``@TABLES@`` in ``args``; ``@SUBS@`` is the submissions
folder). Each case is one zip of a run: the record it must keep (status, penalties, the staff
item, the final score in its record and in its own grades.csv row, its record flags) and
``must_not_gain``, the points the attack would have added to that row.

Rubric: ``theory.q1`` staff item, 4 points (theory.pdf); ``nb.f`` 4 + ``nb.answer`` 2
(work.ipynb); due 2025-10-05 23:59 America/New_York; 20% late penalty up to 24 h late.
"""
from __future__ import annotations

from dataclasses import dataclass, field

FULL_WORK = ("def f(x):\n    return x + 1", "answer = f(41)")
NO_WORK = ("x = 1",)

ON_TIME = "2025-10-05T20:00:00-04:00"
LATE_10H = "2025-10-06T09:59:00-04:00"
LATE_30H = "2025-10-07T05:59:00-04:00"
STAFF_HEADER = "net_id,theory.q1\n"
TIMES_HEADER = "net_id,submitted_at\n"
EXT_HEADER = "net_id,extension_hours\n"


@dataclass(frozen=True)
class ControlCase:
    zip_name: str
    what: str
    cells: tuple[str, ...]
    status: str                              # the record's status
    final: float                             # its final score, in the record and in its own grades.csv row
    must_not_gain: float                     # what the attack would add to that row
    penalties: dict[str, float] = field(default_factory=dict)   # penalty kind -> pct
    staff: float | None = None               # theory.q1 points; None: pending
    flags: tuple[str, ...] = ()              # record flags (also in the review column)
    record: str | None = None                # the record's exact file name, when it must keep an earlier one
    mtime: str | None = None                 # the zip file's modification time


@dataclass(frozen=True)
class ControlRun:
    name: str
    what: str
    args: tuple[str, ...]
    cases: tuple[ControlCase, ...] = ()
    beside: dict[str, str] = field(default_factory=dict)
    named: dict[str, str] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)      # summary word -> file name used ("none")
    stray: tuple[str, ...] = ()              # other entries of the folder ("x/" a folder): listed, never graded
    rc: int = 0
    refused: tuple[str, ...] = ()            # words of the refusal when rc is 2


PLANTED = {
    "submission_times.csv": TIMES_HEADER + f"lt1001,{ON_TIME}\nab1234,{ON_TIME}\n",
    "extensions.csv": EXT_HEADER + "lt1001,48\nab1234,48\n",
    "staff_scores.csv": STAFF_HEADER + "lt1001,4\nab1234,4\n",
}

RUNS = (
    ControlRun(
        "times-flag", "tables beside the zips while staff give --times; two zips resolve to ab1234",
        args=("--times", "@TABLES@/times.csv"),
        beside=PLANTED,
        named={"times.csv": TIMES_HEADER + f"lt1001,{LATE_10H}\nab1234,{ON_TIME}\n"},
        tables={"submission times": "times.csv", "extensions": "none", "staff scores": "none"},
        stray=("cd3456/", "cd3456.txt", ".ef7890.zip"),
        cases=(
            ControlCase("lt1001.zip", "10 h late by the staff's times; the planted tables say on time, "
                        "a 48 h extension and full theory marks",
                        FULL_WORK, "graded", 6 * 0.8, must_not_gain=6 * 0.2 + 4, penalties={"late": 20}),
            ControlCase("ab1234.zip", "the real submission; a stale copy ab1234.zip~ sits beside it",
                        FULL_WORK, "graded", 6, must_not_gain=4, flags=("duplicate_net_id",),
                        record="ab1234.zip.json"),
            ControlCase("ab1234.zip~", "an editor's stale copy: same net_id, no work",
                        NO_WORK, "graded", 0, must_not_gain=4, penalties={"naming": 10},
                        flags=("duplicate_net_id",)),
        )),
    ControlRun(
        "no-tables", "tables beside the zips and none named: the zip's own time is all there is",
        args=(),
        beside=PLANTED,
        tables={"submission times": "none", "extensions": "none", "staff scores": "none"},
        cases=(
            ControlCase("lt1001.zip", "30 h late by its file time; the planted tables would make it on time "
                        "(or extended 48 h) with full theory marks",
                        FULL_WORK, "late_rejected", 0, must_not_gain=6 + 4, mtime=LATE_30H),
        )),
    ControlRun(
        "tables-folder", "the staff's course folder named with --tables; a richer staff_scores.csv beside the zips",
        args=("--tables", "@TABLES@"),
        beside={"staff_scores.csv": STAFF_HEADER + "lt1001,4\n"},
        named={"submission_times.csv": TIMES_HEADER + f"lt1001,{LATE_10H}\n",
               "extensions.csv": EXT_HEADER + "lt1001,12\n",
               "staff_scores.csv": STAFF_HEADER + "lt1001,3\n"},
        tables={"submission times": "submission_times.csv", "extensions": "extensions.csv",
                "staff scores": "staff_scores.csv"},
        cases=(
            ControlCase("lt1001.zip", "10 h late with the staff's 12 h extension and 3 theory points",
                        FULL_WORK, "graded", 6 + 3, must_not_gain=1, staff=3),
        )),
    ControlRun(
        "tables-in-submissions", "--tables naming the submissions folder itself",
        args=("--tables", "@SUBS@"), beside=PLANTED, rc=2,
        refused=("inside the submissions folder", "--tables DIR")),
    ControlRun(
        "file-in-submissions", "--extensions naming a file inside the submissions folder",
        args=("--extensions", "@SUBS@/extensions.csv"), beside=PLANTED, rc=2,
        refused=("extensions.csv is inside the submissions folder",)),
)
