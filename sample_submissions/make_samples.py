"""Build the bundled sample submissions from the assignment's own notebooks.

    .venv/bin/python sample_submissions/make_samples.py

Run it after the notebooks change, review the diff of the zips' contents, and
commit. Each sample looks like something students really hand in; what it must
score is written, by hand, in expected.csv (never regenerated from the grader's
output). The submission times (submission_times.csv) and one student's staff scores
(staff_scores.csv) go to the tables folder ../sample_tables/, which `make grade` names
with --tables: the grader never reads tables from the submissions folder. Zip member
times are fixed, so unchanged notebooks rebuild byte-identical zips.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
HW2 = HERE.parent / "reference" / "hw2"
TABLES = HERE.parent / "sample_tables"
CNN, RNN, SEQ = "hw2_cnn.ipynb", "hw2_rnn.ipynb", "08-seq_classification.ipynb"
FIXED_TIME = (2025, 10, 5, 20, 0, 0)
ON_TIME = "2025-10-05T21:14:00-04:00"


def theory_pdf(net_id: str) -> bytes:
    """A small real PDF with text, as a student's LaTeX answers would be."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    buf = io.BytesIO()
    with PdfPages(buf, metadata={"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None}) as pdf:
        fig = plt.figure(figsize=(8.5, 11))
        fig.text(0.1, 0.9, f"Homework 2 theory answers ({net_id})", fontsize=16)
        fig.text(0.1, 0.85, "1.1(a) The output is 5 x 2.", fontsize=11)
        fig.text(0.1, 0.82, "1.1(b) F x (floor((H - D(K-1) - 1 + 2P)/S) + 1) x (same for W).", fontsize=11)
        pdf.savefig(fig)
        plt.close(fig)
    return buf.getvalue()


def notebook(version: str, name: str) -> bytes:
    return (HW2 / version / name).read_bytes()


def mutate(data: bytes, edits: list[tuple[str, str]], insert: dict[int, str] | None = None) -> bytes:
    """Apply text edits to code cells (each old text must occur exactly once in the notebook)
    and insert new code cells before the given cell indices."""
    nb = nbformat.reads(data.decode(), as_version=4)
    for old, new in edits:
        hits = [c for c in nb.cells if old in c.source]
        if len(hits) != 1 or hits[0].source.count(old) != 1:
            raise SystemExit(f"make_samples: {old!r} occurs {len(hits)} times; update the edit to the notebook")
        hits[0].source = hits[0].source.replace(old, new)
    for index, source in sorted((insert or {}).items(), reverse=True):
        cell = nbformat.v4.new_code_cell(source)
        cell.id = f"sample-{index}"
        nb.cells.insert(index, cell)
    return (nbformat.writes(nb) + "\n").encode()


def first_cell_index(data: bytes, heading: str) -> int:
    nb = nbformat.reads(data.decode(), as_version=4)
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith(heading))


def write_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)


def samples() -> dict[str, tuple[dict[str, bytes] | bytes, str]]:
    sol = {n: notebook("solution", n) for n in (CNN, RNN, SEQ)}
    rel = {n: notebook("release", n) for n in (CNN, RNN, SEQ)}

    def full(net_id: str, **over: bytes) -> dict[str, bytes]:
        return {"hw2_theory.pdf": theory_pdf(net_id), **sol, **over}

    # A typical partial submission: the input gradient of the strided convolution uses the
    # flipped kernel, the weight gradient is right but taken from torch's own convolution
    # (which the notebook forbids there), the learning rate is far too small for the CNN to
    # reach 75%, and the gated RNN mixes h[t-1] and W_x x[t] with the gate and 1 - gate swapped.
    cnn_partial = mutate(sol[CNN], [
        ("torch.einsum('...f,fck->...ck', grad_out[..., p], w)", "torch.einsum('...f,fck->...ck', grad_out[..., p], w.flip(-1))"),
        ("    for p in range(grad_out.shape[-1]):\n        window = x[:, :, stride * p:stride * p + kernel_size]  # (B, C, K)\n"
         "        grad_w += torch.einsum('bf,bck->fck', grad_out[:, :, p], window)\n    return grad_w",
         "    # faster: correlate every input channel with every output gradient, summing over the batch\n"
         "    grad_w = F.conv1d(x.transpose(0, 1), grad_out.transpose(0, 1), dilation=stride)[:, :, :kernel_size]\n"
         "    return grad_w.transpose(0, 1)"),
        ("lr=3e-3", "lr=3e-6"),
    ])
    rnn_partial = mutate(sol[RNN], [
        ("h = c * h + (1 - c) * (x[:, t] @ self.W_x.T)", "h = (1 - c) * h + c * (x[:, t] @ self.W_x.T)"),
    ])
    # Raises in the middle: a leftover debugging cell before Part 2 refers to a name that
    # only existed in the student's own session. The cells after it still run.
    rnn_raises = mutate(sol[RNN], [], insert={
        first_cell_index(sol[RNN], "## Part 2"): "print(debug_batch.shape)  # left over from a Colab session"})
    # Written on Colab: mounts Drive and installs a package before anything else.
    cnn_colab = mutate(sol[CNN], [], insert={1: (
        "from google.colab import drive\ndrive.mount('/content/drive')\n"
        "!pip install -q torchinfo\n%cd /content/drive/MyDrive/hw2")})
    # Cosmetic smoothing: the original Section 8 training, with the plotted curves smoothed
    # by an exponential moving average. The picture is smooth; the training is not.
    seq_cosmetic = mutate(rel[SEQ], [
        ("        ax.plot(history_train[metric])\n        ax.plot(history_test[metric])",
         "        ax.plot(ema(history_train[metric]))\n        ax.plot(ema(history_test[metric]))"),
        ("def train_and_test(", "def ema(values, alpha=0.1):\n    out, avg = [], values[0]\n"
                               "    for v in values:\n        avg = alpha * v + (1 - alpha) * avg\n"
                               "        out.append(avg)\n    return out\n\n\ndef train_and_test("),
    ])

    return {
        "ab1234.zip": (full("ab1234"), ON_TIME),                                         # perfect
        "cd5678.zip": (full("cd5678", **{CNN: cnn_partial, RNN: rnn_partial}), ON_TIME),  # typical partial
        "ef9012.zip": ({"hw2_theory.pdf": theory_pdf("ef9012"), "HW2_CNN.ipynb": sol[CNN],
                        "hw2_rnn (1).ipynb": sol[RNN], SEQ: sol[SEQ]},
                       "2025-10-06T02:59:00-04:00"),                                     # misnamed, 3 h late
        "gh3456.zip": (full("gh3456", **{"test_hw2.py": b"import torch\nprint('my tests pass')\n"}), ON_TIME),
        "ij7890.zip": ({f"hw2_ij7890/{k}": v for k, v in full("ij7890").items()}, ON_TIME),  # one wrapping folder
        "kl2345.zip": ({**full("kl2345"), "__MACOSX/._hw2_cnn.ipynb": b"\x00\x05\x16\x07junk",
                        ".DS_Store": b"\x00\x00\x00\x01Bud1"}, ON_TIME),                  # macOS junk only
        "mn6789.zip": ({k: v for k, v in full("mn6789").items() if k != SEQ}, ON_TIME),  # a notebook missing
        "op1234.zip": (full("op1234", **{"hw2_theory.pdf": b"My answers are below.\n1.1(a) 5 x 2\n"}), ON_TIME),
        "qr5678.zip": (full("qr5678"), "2025-10-07T05:59:00-04:00"),                     # 30 h late
        "st9012.zip": (full("st9012", **{RNN: rnn_raises}), ON_TIME),                     # raises in the middle
        "uv3456.zip": (full("uv3456", **{CNN: cnn_colab}), ON_TIME),                      # Colab lines
        "wx7890.zip": (full("wx7890", **{SEQ: rel[SEQ]}), ON_TIME),                       # original spiky Section 8
        "yz1234.zip": (full("yz1234", **{SEQ: seq_cosmetic}), ON_TIME),                   # cosmetic smoothing
        "ba5678.zip": (rel[RNN], ON_TIME),                                               # a notebook, not a zip
        "dc9012.zip": ({**full("dc9012"), "../../../tmp/dc9012-was-here.txt": b"escape\n"}, ON_TIME),
    }


def main() -> None:
    for old in HERE.glob("*.zip"):
        old.unlink()
    times = ["net_id,submitted_at"]
    for name, (content, when) in samples().items():
        if isinstance(content, bytes):
            (HERE / name).write_bytes(content)
        else:
            write_zip(HERE / name, content)
        times.append(f"{Path(name).stem},{when}")
    TABLES.mkdir(exist_ok=True)
    (TABLES / "submission_times.csv").write_text("\n".join(times) + "\n")

    # Staff have graded one student's theory so far (full marks); the rest stay pending.
    from grader.rubric import load_rubric
    rubric = load_rubric(HERE.parent / "rubrics" / "hw2.toml")
    theory = [i for i in rubric.items if i.part == "theory" and i.kind == "staff"]
    (TABLES / "staff_scores.csv").write_text(",".join(["net_id"] + [i.id for i in theory]) + "\n"
                                             + ",".join(["ab1234"] + [f"{i.points:g}" for i in theory]) + "\n")
    print(f"wrote {len(times) - 1} samples to {HERE}")


if __name__ == "__main__":
    main()
