"""What the trusted side and the in-kernel probe files must agree on, written once.

Standard library and torch only: the probe loads this file by path inside the student's
kernel (``sibling("wire")``), and the grader imports it as ``grader.probe.wire``.
"""
from __future__ import annotations

import os

# Constructors a plan may ask the probe to build; nothing else is built on either side.
ALLOWED_OBJECTS = ("torch.nn.Linear", "torch.nn.Sequential", "torch.nn.Flatten", "torch.nn.ReLU",
                   "torch.nn.Tanh", "torch.nn.Sigmoid", "torch.nn.LogSoftmax", "torch.nn.Softmax",
                   "torch.nn.Conv2d", "torch.nn.BatchNorm2d", "torch.nn.CrossEntropyLoss",
                   "torch.nn.NLLLoss", "torch.nn.MSELoss", "torch.optim.SGD", "torch.optim.Adam")

PROBE_MOUNT = "/grader/probe"          # where these files are inside the sandbox


def leaves(v) -> list:
    """Tensors of a value in a fixed order: outputs and upstream gradients are paired by it."""
    import torch
    if isinstance(v, torch.Tensor):
        return [v]
    if isinstance(v, (list, tuple)):
        return [t for x in v for t in leaves(x)]
    if isinstance(v, dict):
        return [t for k in sorted(v, key=str) for t in leaves(v[k])]
    return []


def sibling(name: str):
    """Another file of this folder, loaded by path (a module a notebook planted in sys.modules
    under that name is not what runs); not registered in sys.modules."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_grader_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def loader_code(file: str, then: str, register_as: str | None = None, imports: str = "") -> str:
    """Kernel code (run hidden by the grader) that loads ``/grader/probe/<file>`` by path, as ``_gm``,
    registers it in sys.modules under ``register_as`` when the probe must find it there after
    the notebook, runs ``then`` and leaves none of its names behind."""
    extra = f", {imports}" if imports else ""
    names = ", ".join(["_gu", "_gsy", "_gs", "_gm"] + [i.split(" as ")[-1] for i in imports.split(", ") if i])
    code = (f"import importlib.util as _gu, sys as _gsy{extra}\n"
            f"_gs = _gu.spec_from_file_location({register_as or '_grader_' + file.rsplit('.', 1)[0]!r}, "
            f"{PROBE_MOUNT + '/' + file!r})\n"
            "_gm = _gu.module_from_spec(_gs)\n")
    if register_as:
        code += f"_gsy.modules[{register_as!r}] = _gm\n"
    body = "".join(f"    {line}\n" for line in ["_gs.loader.exec_module(_gm)", *then.splitlines()])
    return code + "try:\n" + body + f"finally:\n    del {names}\n"
