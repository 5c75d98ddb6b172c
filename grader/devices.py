"""Which device a student kernel gets: the grading machine's GPU when it has one, else the CPU.

Notebooks are written for Colab's GPU. On a machine with an NVIDIA GPU and a CUDA build of
torch, the kernel gets one GPU (its device node bound into the sandbox, ``CUDA_VISIBLE_DEVICES``
set), so the same code runs on it. Without one, the kernel runs on the CPU and code that sends
work to ``"cuda"`` is kept on the CPU (grader/kernel_env/_grader_env.py). Settings: ``auto``
(the default), ``cpu``, or ``cuda:N``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Nodes every CUDA process needs besides its GPU's own /dev/nvidiaN.
SHARED_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
_GPU_NODE = re.compile(r"^nvidia(\d+)$")


class DeviceError(ValueError):
    """A device setting that this machine cannot honour."""


@dataclass(frozen=True)
class Device:
    name: str                                   # "cpu" or "cuda:N" as the grading machine numbers it
    nodes: tuple[str, ...] = ()                 # /dev nodes bound into the sandbox
    env: tuple[tuple[str, str], ...] = ()       # environment of the kernel

    @property
    def is_gpu(self) -> bool:
        return self.name != "cpu"


CPU = Device("cpu")


def gpu_indices(dev_root: Path = Path("/dev")) -> list[int]:
    """The NVIDIA GPUs whose device nodes this machine has."""
    try:
        names = [p.name for p in Path(dev_root).iterdir()]
    except OSError:
        return []
    return sorted(int(m.group(1)) for n in names if (m := _GPU_NODE.match(n)))


def torch_has_cuda() -> bool:
    """Whether the environment's torch (the kernel's too: it is the same one) is a CUDA build."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return torch.version.cuda is not None


def kernel_env(name: str) -> dict[str, str]:
    """Environment of a kernel on device ``name``: it sees only its own GPU, in the driver's bus order."""
    m = re.fullmatch(r"cuda:(\d+)", name)
    return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": m.group(1)} if m else {}


def gpu_device(index: int, dev_root: Path = Path("/dev")) -> Device:
    root = Path(dev_root)
    nodes = [str(root / f"nvidia{index}")] + [str(root / n) for n in SHARED_NODES if (root / n).exists()]
    name = f"cuda:{index}"
    return Device(name, tuple(nodes), tuple(sorted(kernel_env(name).items())))


def choose(setting: str = "auto", dev_root: Path = Path("/dev"), has_cuda: bool | None = None) -> Device:
    """The device for student kernels from the setting; raises DeviceError for a GPU that is not here."""
    setting = (setting or "auto").strip().lower()
    if setting == "cpu":
        return CPU
    gpus = gpu_indices(dev_root)
    if has_cuda is None:
        has_cuda = torch_has_cuda()
    if setting == "auto":
        return gpu_device(gpus[0], dev_root) if gpus and has_cuda else CPU
    m = re.fullmatch(r"cuda:(\d+)", setting)
    if m is None:
        raise DeviceError(f"device {setting!r}: expected auto, cpu or cuda:N")
    index = int(m.group(1))
    if index not in gpus:
        raise DeviceError(f"device {setting}: this machine has no /dev/nvidia{index}"
                          + (f" (it has GPUs {', '.join(map(str, gpus))})" if gpus else " (it has no NVIDIA GPU)"))
    if not has_cuda:
        raise DeviceError(f"device {setting}: the environment's torch is a CPU build; install a CUDA build of torch")
    return gpu_device(index, dev_root)


def for_slot(setting: str, slot: int, kernels_per_gpu: int = 1, dev_root: Path = Path("/dev"),
             has_cuda: bool | None = None) -> str:
    """The device setting of parallel worker ``slot``: with ``auto`` on a machine with GPUs (and
    a CUDA build of torch), worker k gets GPU k mod (number of GPUs), so each GPU serves
    ``kernels_per_gpu`` workers when there are that many per GPU (``gpu_slots``); any other
    setting is every worker's."""
    if (setting or "auto").strip().lower() != "auto":
        return setting
    gpus = gpu_indices(dev_root)
    if not gpus or not (torch_has_cuda() if has_cuda is None else has_cuda):
        return "cpu"
    del kernels_per_gpu   # the pool's size bounds the kernels per GPU (gpu_slots)
    return f"cuda:{gpus[slot % len(gpus)]}"


def gpu_slots(kernels_per_gpu: int = 1, dev_root: Path = Path("/dev"), has_cuda: bool | None = None) -> int:
    """How many kernels this machine's GPUs take at once (0: no usable GPU)."""
    gpus = gpu_indices(dev_root)
    if not gpus or not (torch_has_cuda() if has_cuda is None else has_cuda):
        return 0
    return len(gpus) * max(1, kernels_per_gpu)
