"""Hostile Section 8 notebooks: ways to hand the grader a smooth curve without a smooth training.

Each case edits the released 08-seq_classification (its spiky training kept as it is) and is
graded through the real runner (tests/test_hostile_section8.py). None may earn a point of the
Section 8 part; each must be flagged for staff with the words in ``message``.
"""
from __future__ import annotations

from dataclasses import dataclass

# A made-up smooth curve: ln 4 decaying to 0.05 over the 3 100 steps.
SMOOTH = "max(0.05, 1.386 * 0.999 ** {i})"


@dataclass(frozen=True)
class Section8Case:
    net_id: str
    what: str
    train_backward: str | None      # replaces `loss.backward()` in the shared train(), if given
    last_cell: str | None           # appended after the notebook's last cell, if given
    message: tuple[str, ...]        # words of the no_spikes item's message
    released_curve: bool = True     # the grader's curve is the released training's (weights not rewritten)


CASES = [
    Section8Case(
        "hs801", "back-propagates the real gradient but hands backward a smooth value",
        train_backward=("train.n = getattr(train, 'n', 0) + 1\n"
                        f"        shown = torch.tensor({SMOOTH.format(i='train.n')})\n"
                        "        (loss + (shown - loss.detach())).backward()"),
        last_cell=None,
        message=("back-propagated differs from the batch loss the grader computes", "goes to staff")),
    Section8Case(
        "hs802", "a last cell rewrites the instrument's recorded losses",
        train_backward=None,
        last_cell=("import sys\n"
                   "inst = sys.modules['_grader_instrument'].INSTANCE\n"
                   "for r in inst.runs:\n"
                   f"    r.loss = [{SMOOTH.format(i='i')} for i in range(len(r.loss))]"),
        message=("back-propagated differs from the batch loss the grader computes",)),
    Section8Case(
        "hs803", "a last cell rewrites the recorded weights (jump to the trained ones) and drops the losses",
        train_backward=None,
        last_cell=("import sys, math\n"
                   "inst = sys.modules['_grader_instrument'].INSTANCE\n"
                   "for r in inst.runs:\n"
                   "    if r.trajectory:\n"
                   "        r.trajectory = r.trajectory[:1] + [r.after.clone() for _ in r.trajectory[1:]]\n"
                   "        r.loss = [math.nan] * len(r.loss)"),
        message=("moves the recorded weights", "record of the training was altered"), released_curve=False),
]
