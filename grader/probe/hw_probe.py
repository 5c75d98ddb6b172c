"""Probes run inside the student's kernel after the notebook (standard library only).

Student code shares this process, so nothing found here is trusted beyond plain values:
names are looked up in the `__main__` namespace without calling student code, and only
booleans and type names are written out.
"""
from __future__ import annotations

import json
import sys

_TYPE_NAME = type.__dict__["__name__"]


def _type_name(obj: object) -> str:
    # Read the name through `type`'s own descriptor so a student metaclass cannot intercept it.
    return str(_TYPE_NAME.__get__(type(obj), type))


def _namespace() -> dict:
    main = sys.modules.get("__main__")
    ns = getattr(main, "__dict__", None)
    return ns if isinstance(ns, dict) else {}


def exists(names: list[str], out_path: str) -> dict:
    """Write {name: {"exists", "type", "callable"}} for each name to out_path as JSON."""
    ns = _namespace()
    report: dict[str, dict] = {}
    for name in names:
        name = str(name)
        if name in ns:
            obj = ns[name]
            report[name] = {"exists": True, "type": _type_name(obj), "callable": callable(obj)}
        else:
            report[name] = {"exists": False, "type": None, "callable": False}
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, sort_keys=True)
    return report


# Each action is a plain-JSON dict from the trusted side's plan; its answer goes to
# <out_dir>/<item id>.json. One failing action never stops the others.
_ACTIONS = {"exists": lambda a, out: exists(list(a.get("names", [])), out)}


def run_plan(plan_path: str, out_dir: str) -> None:
    import os
    import traceback

    with open(plan_path, encoding="utf-8") as f:
        plan = json.load(f)
    for action in plan.get("actions", []):
        item = str(action.get("item", "item"))
        out_path = os.path.join(out_dir, item + ".json")
        try:
            _ACTIONS[action["action"]](action, out_path)
        except Exception:
            with open(os.path.join(out_dir, item + ".error.txt"), "w", encoding="utf-8") as f:
                f.write(traceback.format_exc(limit=6)[-4000:])
