"""Deadline boundaries, extensions, and the staff CSV readers."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from grader.deadline import judge
from grader.rubric import Deadline
from grader.tables import TableError, load_extensions, load_staff_scores, load_times

NY = ZoneInfo("America/New_York")
DUE = datetime(2025, 10, 5, 23, 59, tzinfo=NY)
POLICY = Deadline(DUE, "America/New_York", 24, 20)


@pytest.mark.parametrize("offset,status,pct", [
    (timedelta(hours=-5), "on_time", 0),
    (timedelta(0), "on_time", 0),                       # exactly at the due time
    (timedelta(seconds=1), "late", 20),
    (timedelta(hours=3), "late", 20),
    (timedelta(hours=24), "late", 20),                  # exactly at the end of the late window
    (timedelta(hours=24, seconds=1), "rejected", 100),
    (timedelta(hours=30), "rejected", 100),
])
def test_boundaries(offset, status, pct):
    r = judge(DUE + offset, POLICY)
    assert (r.status, r.penalty_pct) == (status, pct)


def test_other_time_zone_is_converted():
    # 03:30 UTC on Oct 6 is 23:30 on Oct 5 in New York (EDT, UTC-4): on time.
    r = judge(datetime(2025, 10, 6, 3, 30, tzinfo=timezone.utc), POLICY)
    assert r.status == "on_time"
    assert r.submitted_at == "2025-10-05T23:30:00-04:00"
    # 04:30 UTC is 00:30 in New York: 31 minutes late.
    late = judge(datetime(2025, 10, 6, 4, 30, tzinfo=timezone.utc), POLICY)
    assert late.status == "late" and "0 h 31 min" in late.message


def test_extension_moves_both_boundaries():
    ext = timedelta(hours=48)
    assert judge(DUE + timedelta(hours=47), POLICY, ext).status == "on_time"
    assert judge(DUE + timedelta(hours=48 + 23), POLICY, ext).status == "late"
    assert judge(DUE + timedelta(hours=48 + 25), POLICY, ext).status == "rejected"


def test_unknown_time_warns():
    r = judge(None, POLICY)
    assert r.status == "unknown" and r.penalty_pct == 0 and r.warning


def test_naive_time_is_a_programming_error():
    with pytest.raises(ValueError):
        judge(datetime(2025, 10, 5), POLICY)


def test_load_times(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("net_id,submitted_at\nabc123,2025-10-05T22:00:00-04:00\nABC123,2025-10-06T01:00:00-04:00\n"
                 "xy12,2025-10-06T04:00:00Z\n")
    t = load_times(p)
    assert t["abc123"] == datetime(2025, 10, 6, 1, 0, tzinfo=timezone(timedelta(hours=-4)))  # latest kept
    assert t["xy12"] == datetime(2025, 10, 6, 4, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("body,message", [
    ("netid,when\nabc1,2025-10-05T22:00:00-04:00\n", "missing column(s) net_id, submitted_at"),
    ("net_id,submitted_at\nabc1,2025-10-05 22:00\n", "line 2: '2025-10-05 22:00' has no UTC offset"),
    ("net_id,submitted_at\nabc1,yesterday\n", "line 2: 'yesterday' is not an ISO 8601 time"),
])
def test_bad_times_csv(tmp_path, body, message):
    p = tmp_path / "t.csv"
    p.write_text(body)
    with pytest.raises(TableError) as e:
        load_times(p)
    assert message in str(e.value)


def test_extensions_and_staff_scores(tmp_path):
    e = tmp_path / "e.csv"
    e.write_text("net_id,extension_hours\nabc1,48\n")
    assert load_extensions(e) == {"abc1": timedelta(hours=48)}
    e.write_text("net_id,extension_hours\nabc1,-2\n")
    with pytest.raises(TableError, match="must not be negative"):
        load_extensions(e)
    s = tmp_path / "s.csv"
    s.write_text("net_id,theory.a,theory.b\nabc1,1,\nxy2,0.5,2\n")
    assert load_staff_scores(s, {"theory.a", "theory.b"}) == {"abc1": {"theory.a": 1.0},
                                                              "xy2": {"theory.a": 0.5, "theory.b": 2.0}}
    with pytest.raises(TableError, match="not staff-graded items"):
        load_staff_scores(s, {"theory.a"})
