"""The course's environment: declared packages checked in a real sandboxed kernel, devices, limits."""
from pathlib import Path

import pytest

from grader import devices, limits
from grader.environment import Package, check_packages, parse_packages
from grader.execute import ExecSettings
from grader.preflight import EnvironmentIncomplete, preflight
from grader.rubric import RubricError, load_rubric

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- packages

def test_packages_parse_as_pip_requirements():
    got = parse_packages(("torchvision==0.28.0", "Pillow>=10", "six"))
    assert got == (Package("torchvision==0.28.0", "torchvision", "==0.28.0"),
                   Package("Pillow>=10", "pillow", ">=10"), Package("six", "six", ""))
    for bad, why in [(("torch @ https://x/y.whl",), "only a name"), (("torch==",), "not a pip requirement"),
                     (("six", "Six>=1"), "more than once")]:
        with pytest.raises(ValueError, match=why):
            parse_packages(bad)


def test_rubric_declares_the_course_libraries():
    e = load_rubric(REPO / "rubrics" / "hw2.toml").execution
    names = {p.name for p in e.packages}
    assert {"torch", "torchvision", "numpy", "pillow", "matplotlib", "pandas", "six", "tqdm"} <= names
    assert next(p for p in e.packages if p.name == "torchvision").specifier == "==0.28.0"


def test_a_bad_package_entry_names_its_key(tmp_path):
    text = (REPO / "rubrics" / "hw2.toml").read_text().replace('"six>=1.16",', '"six>=",')
    (tmp_path / "r.toml").write_text(text.replace('reference_dir = "../reference/hw2"',
                                                  f'reference_dir = "{REPO / "reference" / "hw2"}"'))
    with pytest.raises(RubricError, match=r"execution.packages\[\d\]: 'six>=' is not a pip requirement"):
        load_rubric(tmp_path / "r.toml")


def test_check_packages_reads_versions_and_import_failures():
    pk = parse_packages(("torch==2.13.0", "six>=2", "tqdm", "nothing-here"))
    report = {"torch": {"version": "2.13.0+cpu", "modules": ["torch"], "error": None},
              "six": {"version": "1.17.0", "modules": ["six"], "error": None},
              "tqdm": {"version": "4.70.1", "modules": ["tqdm"], "error": "import tqdm failed: ImportError: x"},
              "nothing-here": {"version": None, "modules": [], "error": "not installed"}}
    problems, found = check_packages(pk, report)
    assert found == {"torch": "2.13.0+cpu", "six": "1.17.0", "tqdm": "4.70.1"}
    assert problems == ["six>=2: the kernel has six 1.17.0", "tqdm: import tqdm failed: ImportError: x",
                        "nothing-here: not installed in the kernel's environment"]


def test_preflight_imports_every_declared_package_in_the_sandbox():
    e = load_rubric(REPO / "rubrics" / "hw2.toml").execution
    found = preflight(ExecSettings(), e.packages)["packages"]
    assert found["torchvision"] == "0.28.0" and found["torch"].startswith("2.13.0")


def test_preflight_refuses_a_kernel_without_a_declared_package():
    with pytest.raises(EnvironmentIncomplete) as e:
        preflight(ExecSettings(), parse_packages(("six", "scikit-learn>=1.0", "numpy<2")))
    text = str(e.value)
    assert "scikit-learn>=1.0: not installed" in text and "numpy<2: the kernel has numpy 2." in text
    assert "pip install" in text and "six" not in text.split(":")[1]


def test_grader_environment_lists_requirements_for_make(capsys):
    from grader.cli import main
    assert main(["environment", "--requirements"]) == 0
    lines = capsys.readouterr().out.split()
    assert lines[:2] == ["torch==2.13.0", "torchvision==0.28.0"] and "six>=1.16" in lines


# ---------------------------------------------------------------- devices

def _fake_dev(tmp_path, names):
    root = tmp_path / "dev"
    root.mkdir()
    for n in names:
        (root / n).touch()
    return root


def test_auto_takes_the_cpu_without_gpu_nodes_or_without_a_cuda_torch(tmp_path):
    empty = _fake_dev(tmp_path, ["null", "zero"])
    assert devices.choose("auto", empty, has_cuda=True) == devices.CPU
    gpus = tmp_path / "g"
    gpus.mkdir()
    for n in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):
        (gpus / n).touch()
    assert devices.choose("auto", gpus, has_cuda=False) == devices.CPU
    assert devices.choose("cpu", gpus, has_cuda=True) == devices.CPU
    # This machine: a CPU build of torch, so auto is the CPU whatever /dev holds.
    assert devices.choose("auto") == devices.CPU


def test_a_gpu_kernel_gets_its_node_the_shared_nodes_and_its_index(tmp_path):
    root = _fake_dev(tmp_path, ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-modeset"])
    d = devices.choose("auto", root, has_cuda=True)
    assert d.name == "cuda:0" and d.is_gpu
    assert d.nodes == (str(root / "nvidia0"), str(root / "nvidiactl"), str(root / "nvidia-uvm"),
                       str(root / "nvidia-modeset"))
    assert dict(d.env) == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "0"}
    assert devices.choose("cuda:1", root, has_cuda=True).nodes[0] == str(root / "nvidia1")
    assert devices.gpu_indices(root) == [0, 1]


def test_a_device_the_machine_cannot_give_is_refused_with_why(tmp_path):
    root = _fake_dev(tmp_path, ["nvidia0", "nvidiactl"])
    with pytest.raises(devices.DeviceError, match="no /dev/nvidia3 .it has GPUs 0."):
        devices.choose("cuda:3", root, has_cuda=True)
    with pytest.raises(devices.DeviceError, match="CPU build"):
        devices.choose("cuda:0", root, has_cuda=False)
    with pytest.raises(devices.DeviceError, match="expected auto, cpu or cuda:N"):
        devices.choose("gpu", root)


def test_the_sandbox_binds_only_the_chosen_gpu(tmp_path):
    from grader.sandbox import Sandbox
    root = _fake_dev(tmp_path, ["nvidia0", "nvidia1", "nvidiactl"])
    d = devices.choose("cuda:1", root, has_cuda=True)
    with Sandbox(workdir=tmp_path, memory_mb=2048, pids_max=64, tmp_mb=64, fsize_mb=64, cpu_s=60,
                 gpu_nodes=list(d.nodes)) as sbx:
        args = sbx._bind_args()
        launcher = sbx.launcher.read_text()
    binds = [args[i + 1] for i, a in enumerate(args) if a == "--dev-bind"]
    assert f"--dev-bind {root / 'nvidia1'}" in launcher
    assert binds == [str(root / "nvidia1"), str(root / "nvidiactl")]


# ---------------------------------------------------------------- limits

def test_limits_scale_with_a_slower_machine_never_below_nominal():
    slow = limits.limits_for(600, 1500, "scaled", 1.5, 4, measured_s=2 * limits.REFERENCE_S)
    assert (slow.cell_s, slow.notebook_s, slow.scale) == (1800, 4500, 3.0)
    assert "x 3" in slow.why and "floor 1" in slow.why
    fast = limits.limits_for(600, 1500, "scaled", 1.0, 4, measured_s=limits.REFERENCE_S / 3)
    assert (fast.cell_s, fast.notebook_s) == (600, 1500)
    capped = limits.limits_for(600, 1500, "scaled", 1.5, 4, measured_s=10 * limits.REFERENCE_S)
    assert capped.scale == 4
    fixed = limits.limits_for(600, 1500, "fixed", 1.5, 4, measured_s=10 * limits.REFERENCE_S)
    assert (fixed.cell_s, fixed.scale) == (600, 1.0)


def test_calibration_runs_in_the_sandbox_and_is_kept_per_machine(tmp_path):
    first = limits.measured_speed(tmp_path, threads=1)
    assert 0.05 < first < 30
    kept = list((tmp_path / "machine").glob("*.json"))
    assert len(kept) == 1
    assert limits.measured_speed(tmp_path, threads=1) == first          # read back, not measured again
    assert limits.machine_key(1) != limits.machine_key(2)
