"""The course environment inside a student kernel, installed hidden before the first cell.

Code written for Colab, with a GPU and the libraries of its term, should run here as it ran
there. Nothing in this module decides a grade: it only makes calls that Colab code relies on
work in the sandbox, and every change is reported by the trusted side from the notebook's
source, not from here.

- ``google.colab`` is importable (the package beside this file).
- torchvision's Python layers (transforms, datasets, models) import even when its compiled
  ops library cannot load beside the CPU build of torch; ``torchvision.ops`` then raises
  torchvision's own "Couldn't load custom C++ ops" error when called.
- ``RandomRotation(..., resample=...)`` and ``RandomAffine(..., resample=..., fillcolor=...)``,
  the keywords of the torchvision the course template was written for, still work.
- ``tqdm.notebook`` falls back to text progress bars when there are no widgets.
- With ``cuda_fallback``, on a kernel without a GPU: tensors, modules and criteria sent to
  ``"cuda"`` stay on the CPU, and ``torch.cuda.get_device_name`` and friends answer instead of
  raising. ``torch.cuda.is_available()`` still says False, so code that asks takes its CPU path.
"""
from __future__ import annotations

import importlib.abc
import sys
import types
from typing import Any, Callable

_KEEP: list[Any] = []          # objects that must stay alive (torch.library registrations)
_STATE: dict[str, Any] = {"installed": False, "cuda_fallback": False}
CPU_DEVICE_NAME = "CPU (the grader has no GPU; this ran on the CPU)"


# ---------------------------------------------------------------- import hooks

class _HookedLoader:
    """A loader that runs callbacks around the real loader's exec_module."""

    def __init__(self, loader: Any, name: str) -> None:
        self._loader, self._name = loader, name

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        # Taken only now: a find_spec that does not import (importlib.util.find_spec) must
        # leave the hooks for the real import.
        before = _HOOKS.before.pop(self._name, None)
        after = _HOOKS.after.pop(self._name, None)
        if before is not None:
            _quietly(before)
        self._loader.exec_module(module)
        if after is not None:
            _quietly(lambda: after(module))

    def __getattr__(self, name: str) -> Any:      # get_source, get_filename, is_package, ...
        return getattr(self._loader, name)


class _ImportHooks(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.before: dict[str, Callable[[], None]] = {}
        self.after: dict[str, Callable[[Any], None]] = {}

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in self.before and name not in self.after:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _HookedLoader(spec.loader, name)
        return spec


_HOOKS = _ImportHooks()


def _quietly(fn: Callable[[], None]) -> None:
    # A compatibility fix that fails must never break the student's import.
    try:
        fn()
    except Exception as e:  # pragma: no cover - reported, never raised
        print(f"[grader] environment fix skipped: {type(e).__name__}: {e}", file=sys.stderr)


def _on_import(name: str, after: Callable[[Any], None]) -> None:
    if name in sys.modules:
        _quietly(lambda: after(sys.modules[name]))
    else:
        _HOOKS.after[name] = after


def _before_import(name: str, before: Callable[[], None]) -> None:
    if name not in sys.modules:
        _HOOKS.before[name] = before


# ---------------------------------------------------------------- torchvision

def _torchvision_op_schemas() -> None:
    """torchvision registers fake kernels for nms/qnms without asking whether its compiled
    library loaded; declare the two schemas so that the import gets past them."""
    import torchvision.extension as ext
    if ext._has_ops():
        return
    import torch
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for schema in ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
                   "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"):
        try:
            lib.define(schema)
        except RuntimeError:
            pass            # already defined
    _KEEP.append(lib)


def _torchvision_old_keywords(module: Any) -> None:
    for cls_name, renames in (("RandomRotation", {"resample": "interpolation"}),
                              ("RandomAffine", {"resample": "interpolation", "fillcolor": "fill"})):
        cls = getattr(module, cls_name, None)
        if cls is None or getattr(cls.__init__, "_grader_compat", False):
            continue
        original = cls.__init__

        def __init__(self: Any, *args: Any, _original: Any = original, _renames: dict = renames,
                     **kwargs: Any) -> None:
            for old, new in _renames.items():
                if old in kwargs and new not in kwargs:
                    kwargs[new] = kwargs.pop(old)
            _original(self, *args, **kwargs)

        __init__._grader_compat = True  # type: ignore[attr-defined]
        __init__.__doc__ = original.__doc__
        cls.__init__ = __init__


# ---------------------------------------------------------------- tqdm

def _tqdm_text_bars() -> None:
    try:
        import tqdm
        import tqdm.notebook as notebook
        import tqdm.std as std
    except ImportError:
        return
    if getattr(notebook, "IProgress", None) is not None:
        return              # widgets exist: the notebook bars work as they are
    notebook.tqdm = notebook.tqdm_notebook = std.tqdm
    notebook.trange = notebook.tnrange = std.trange
    tqdm.tqdm_notebook = std.tqdm
    tqdm.tnrange = std.trange


# ---------------------------------------------------------------- CUDA code on the CPU

def _is_cuda(device: Any) -> bool:
    kind = getattr(device, "type", None)
    if isinstance(kind, str):
        return kind == "cuda"
    if isinstance(device, str):
        return device.strip().lower().startswith("cuda")
    return False


def _cuda_on_cpu(torch: Any) -> None:
    if torch.cuda.is_available() or _STATE.get("mode") is not None:
        return
    from torch.overrides import TorchFunctionMode

    to_methods = (torch.Tensor.to, torch.Tensor.cuda)

    class CudaOnCpu(TorchFunctionMode):
        """Every torch call with a CUDA device in its arguments gets the CPU instead."""

        def __torch_function__(self, func: Any, _types: Any, args: tuple = (), kwargs: Any = None) -> Any:
            if func is torch.Tensor.cuda:
                return args[0]
            if kwargs:
                device = kwargs.get("device")
                if device is not None and (_is_cuda(device) or (type(device) is int and device >= 0)):
                    kwargs = {**kwargs, "device": "cpu"}
            else:
                kwargs = {}
            if func in to_methods and len(args) > 1:
                args = tuple("cpu" if i and _is_cuda(a) else a for i, a in enumerate(args))
            return func(*args, **kwargs)

    mode = CudaOnCpu()
    mode.__enter__()        # stays on for the life of the kernel
    _STATE["mode"] = mode

    cuda = torch.cuda
    cuda.get_device_name = lambda device=None: CPU_DEVICE_NAME
    cuda.current_device = lambda: 0
    cuda.synchronize = lambda device=None: None
    cuda.set_device = lambda device: None
    cuda.get_device_properties = lambda device=None: types.SimpleNamespace(
        name=CPU_DEVICE_NAME, total_memory=0, major=0, minor=0, multi_processor_count=0)
    original_load = torch.load

    def load(*args: Any, map_location: Any = None, **kwargs: Any) -> Any:
        if map_location is None or _is_cuda(map_location):
            map_location = "cpu"
        return original_load(*args, map_location=map_location, **kwargs)

    load.__doc__ = original_load.__doc__
    torch.load = load
    for name in ("FloatTensor", "DoubleTensor", "HalfTensor", "LongTensor", "IntTensor",
                 "ShortTensor", "ByteTensor", "CharTensor", "BoolTensor"):
        if hasattr(torch, name):
            setattr(cuda, name, getattr(torch, name))


# ---------------------------------------------------------------- entry point

def install(cuda_fallback: bool = True) -> None:
    """Install the fixes once; later calls change nothing."""
    if _STATE["installed"]:
        return
    _STATE["installed"] = True
    _STATE["cuda_fallback"] = cuda_fallback
    sys.meta_path.insert(0, _HOOKS)
    _before_import("torchvision._meta_registrations", _torchvision_op_schemas)
    _on_import("torchvision.transforms.transforms", _torchvision_old_keywords)
    _quietly(_tqdm_text_bars)
    if cuda_fallback:
        _on_import("torch", _cuda_on_cpu)
