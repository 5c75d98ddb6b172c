"""Reference results that no student changes are computed once per machine and cache folder,
by one process while the others wait, and loaded back exactly."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from grader import reference_cache
from grader.checks.replay import BatchPool, digest

REPO = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {repo!r})
    from pathlib import Path
    from grader import reference_cache

    def compute():
        with open({log!r}, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        time.sleep(1.5)         # long enough for the other process to arrive while this one computes
        return {{"loss": [0.5, 0.25], "t": __import__("torch").arange(4)}}

    value = reference_cache.cached("demo:losses", Path({ref!r}), Path({cache!r}), compute)
    print(value["loss"], value["t"].tolist())
""")


def _ref(tmp_path: Path, text: str = "X = 1\n") -> Path:
    ref = tmp_path / "ref"
    ref.mkdir(exist_ok=True)
    (ref / "demo.py").write_text(text)
    return ref


def test_two_processes_compute_once_and_both_get_the_value(tmp_path):
    ref, cache, log = _ref(tmp_path), tmp_path / "cache", tmp_path / "computed.log"
    code = WORKER.format(repo=str(REPO), log=str(log), ref=str(ref), cache=str(cache))
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs == ["[0.5, 0.25] [0, 1, 2, 3]"] * 2
    assert len(log.read_text().split()) == 1, "the second process computed again instead of waiting"
    # A third process, later, loads it without computing.
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert again.stdout.strip() == outs[0] and len(log.read_text().split()) == 1


def test_a_changed_reference_package_or_a_damaged_entry_is_computed_again(tmp_path):
    ref, cache = _ref(tmp_path), tmp_path / "cache"
    calls = []

    def compute():
        calls.append(1)
        return [float(len(calls))]

    def fresh_process_view(reference: Path):
        reference_cache._LOADED.clear()
        reference_cache._DIGESTS.clear()
        return reference_cache.cached("demo:v", reference, cache, compute)

    assert fresh_process_view(ref) == [1.0]
    assert fresh_process_view(ref) == [1.0] and len(calls) == 1
    # The assignment's own tests beside its reference are not the reference.
    (ref / "tests").mkdir()
    (ref / "tests" / "test_demo.py").write_text("def test_x():\n    pass\n")
    assert fresh_process_view(ref) == [1.0] and len(calls) == 1
    (ref / "demo.py").write_text("X = 2\n")
    assert fresh_process_view(ref) == [2.0]
    for entry in (cache / "reference").glob("*.pt"):
        entry.write_bytes(b"not a torch file")
    assert fresh_process_view(ref) == [3.0]
    assert fresh_process_view(ref) == [3.0] and len(calls) == 3


def test_a_batch_pool_kept_on_disk_finds_and_returns_the_same_batches(tmp_path):
    def stream():
        gen = torch.Generator().manual_seed(0)
        for i in range(40):
            if i % 7 == 3:     # a batch that is not zeros and ones is kept as it is
                yield torch.randn(4, 5, 3, generator=gen), torch.randint(0, 3, (4,), generator=gen)
            else:
                x = torch.nn.functional.one_hot(torch.randint(0, 3, (4, 5 + i % 3), generator=gen), 3).float()
                yield x, torch.randint(0, 3, (4,), generator=gen)

    live = BatchPool(stream(), limit=30)
    kept = BatchPool.from_state(reference_cache.cached("demo:pool", _ref(tmp_path), tmp_path / "cache",
                                                       lambda: BatchPool(stream(), limit=30).filled().state()))
    assert len(kept) == 30
    for i in range(30):
        x, y = kept.batch(i)
        assert live.find(digest(x)) == i
        lx, ly = live.batch(i)
        assert torch.equal(lx, x) and torch.equal(ly, y)
    beyond = list(stream())[35][0]
    assert kept.find(digest(beyond)) is None and live.find(digest(beyond)) is None
