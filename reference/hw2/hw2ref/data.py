"""A small synthetic stand-in for the course's ``cats_and_dogs_filtered`` image set.

The course notebook downloads 3000 photos at run time; the grader has no network and
little CPU, so the assignment ships with a generator that writes the same folder layout::

    <root>/cats_and_dogs_filtered/{train,validation}/{cats,dogs}/<name>.png

Class signal: every image holds one small glyph at a random place, slightly rotated and
scaled.  "cats" carry a diagonal cross (x), "dogs" an upright cross (+).  Everything else
is shared by both classes and random per image: background colour and gradient, glyph
colour, several blob distractors and pixel noise.  The glyph's position varies, so no
fixed pixel (nor the mean colour) tells the classes apart: a linear model on pixels stays
near chance, while a few convolutions followed by global pooling find the glyph.

Determinism: one ``numpy.random.Generator`` seeded from ``seed`` drives all randomness and
PNG is lossless, so the same arguments give the same bytes (see :func:`tree_digest`).

CLI: ``python -m hw2ref.data OUT_DIR [--seed N] [--train N] [--val N] [--size N]``
prints the folder holding ``train/`` and ``validation/`` (to be used as HW2_DATA_DIR).
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("cats", "dogs")  # alphabetical, as ImageFolder numbers them: cats=0, dogs=1
DATASET_DIRNAME = "cats_and_dogs_filtered"
SPLITS = ("train", "validation")


@dataclass(frozen=True)
class Style:
    """Knobs of the generator; the defaults are the assignment's difficulty."""

    glyph_min: float = 0.20  # glyph arm length as a fraction of the image side
    glyph_max: float = 0.32
    max_tilt_deg: float = 12.0
    n_blobs: tuple[int, int] = (2, 5)
    noise_std: float = 12.0  # per-pixel Gaussian noise, in 0..255 units


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3)


def _contrasting_colour(rng: np.random.Generator, against: np.ndarray) -> np.ndarray:
    # The glyph must stay visible, whatever the background.
    for _ in range(100):
        c = _random_colour(rng)
        if np.abs(c - against).sum() > 180:
            return c
    return 255.0 - against


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = _random_colour(rng)
    other = _random_colour(rng)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / max(np.ptp(t), 1e-9)
    mix = rng.uniform(0.0, 0.6)
    return base[None, None, :] * (1 - mix * t[..., None]) + other[None, None, :] * (mix * t[..., None])


def _draw_blobs(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, style: Style) -> None:
    for _ in range(int(rng.integers(style.n_blobs[0], style.n_blobs[1] + 1))):
        r = rng.uniform(0.05, 0.14) * size
        ry = r * rng.uniform(0.6, 1.4)
        cx, cy = rng.uniform(0, size, size=2)
        colour = tuple(int(v) for v in _random_colour(rng))
        draw.ellipse([cx - r, cy - ry, cx + r, cy + ry], fill=colour)


def _draw_glyph(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, label: int,
                colour: tuple[int, int, int], style: Style) -> None:
    arm = rng.uniform(style.glyph_min, style.glyph_max) * size / 2
    width = max(2, int(round(size / 28 + rng.uniform(0, 1))))
    margin = arm + width
    cx, cy = rng.uniform(margin, size - margin, size=2)
    base = 45.0 if label == 0 else 0.0
    tilt = math.radians(base + rng.uniform(-style.max_tilt_deg, style.max_tilt_deg))
    for a in (tilt, tilt + math.pi / 2):
        dx, dy = arm * math.cos(a), arm * math.sin(a)
        draw.line([cx - dx, cy - dy, cx + dx, cy + dy], fill=colour, width=width)


def render_image(rng: np.random.Generator, label: int, size: int = 64, style: Style = Style()) -> Image.Image:
    """One RGB image of class ``label`` (0 = cats / x, 1 = dogs / +)."""
    bg = _background(rng, size)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    _draw_blobs(draw, rng, size, style)
    glyph_colour = tuple(int(v) for v in _contrasting_colour(rng, bg.mean(axis=(0, 1))))
    _draw_glyph(draw, rng, size, label, glyph_colour, style)
    arr = np.asarray(img, dtype=np.float64) + rng.normal(0, style.noise_std, size=(size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), "RGB")


def make_cats_and_dogs(root: Path, n_train_per_class: int = 300, n_val_per_class: int = 150,
                       size: int = 64, seed: int = 0, style: Style = Style()) -> Path:
    """Write the data set under ``root/cats_and_dogs_filtered`` and return that folder.

    Existing files of the same names are overwritten; nothing else is removed.
    """
    out = Path(root) / DATASET_DIRNAME
    rng = np.random.default_rng(seed)
    counts = {"train": n_train_per_class, "validation": n_val_per_class}
    for split in SPLITS:
        for label, cls in enumerate(CLASSES):
            folder = out / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(counts[split]):
                img = render_image(rng, label, size, style)
                img.save(folder / f"{cls[:-1]}.{i:04d}.png", format="PNG", optimize=False)
    return out


# The notebook trains on the mounted set (seed RELEASE_SEED, also what students get); accuracy is
# measured on images from another seed that never leave the grader.
RELEASE_SEED = 0
HELDOUT_SEED = 2025


def prepare_for_grader(folder: Path) -> Path:
    """The mounted data set: the folder holding ``train/`` and ``validation/`` (HW2_DATA_DIR)."""
    return make_cats_and_dogs(folder, seed=RELEASE_SEED)


def prepare_course_layout(folder: Path) -> Path:
    """The set as the course's template expects it beside the notebook: its given code splits
    ``validation/`` into ``[500, 500]``, so there are 500 + 500 validation images; 300 + 300
    training images (as in this project's own set) keep a real notebook's CPU time bounded."""
    return make_cats_and_dogs(folder, n_train_per_class=300, n_val_per_class=500, seed=RELEASE_SEED)


def heldout_images(n_per_class: int = 150, size: int = 64, seed: int = HELDOUT_SEED,
                   style: Style = Style()) -> list[tuple[Image.Image, int]]:
    """Fresh ``(image, label)`` pairs for measuring a trained model, classes interleaved."""
    rng = np.random.default_rng(seed)
    return [(render_image(rng, label, size, style), label)
            for _ in range(n_per_class) for label in range(len(CLASSES))]


def heldout_tensors(seed: int, n_per_class: int = 150, size: int = 64) -> dict:
    """Grader-side behaviour data: fresh images from ``seed`` as a uint8 tensor (N, H, W, 3)
    and their labels (N,). Only the images go to the student's kernel, where its own
    ``validation_transforms`` prepares them (as PIL images) the way it prepares its data."""
    import torch
    pairs = heldout_images(n_per_class, size, seed)
    images = np.stack([np.asarray(img, dtype=np.uint8) for img, _ in pairs])
    return {"inputs": torch.from_numpy(images), "labels": torch.tensor([y for _, y in pairs], dtype=torch.int64)}


@functools.lru_cache(maxsize=4)
def _split_images(n_train_per_class: int, n_val_per_class: int, size: int, seed: int) -> tuple:
    """The ``validation/`` images of make_cats_and_dogs(seed=...) in ImageFolder order (classes
    alphabetical, files sorted), rendered again rather than read from disk."""
    rng = np.random.default_rng(seed)
    counts = {"train": n_train_per_class, "validation": n_val_per_class}
    out = []
    for split in SPLITS:
        for label, _cls in enumerate(CLASSES):
            for _ in range(counts[split]):
                img = render_image(rng, label, size)
                if split == "validation":
                    out.append((np.asarray(img, dtype=np.uint8), label))
    return tuple(out)


def test_split_tensors(seed: int, n_train_per_class: int = 300, n_val_per_class: int = 150,
                       size: int = 64, first: int | None = None, split_seed: int = 42) -> dict:
    """The notebook's own ``test_dataset``: the part after the first ``first`` images (half by
    default) of ``random_split(<validation/>, ..., generator=torch.Generator().manual_seed(42))``,
    as the given code splits it; uint8 images (N, H, W, 3) for the student's own transform, and
    their labels. ``seed`` is unused: the test set is the notebook's, not a fresh one."""
    import torch
    images = _split_images(n_train_per_class, n_val_per_class, size, RELEASE_SEED)
    n = len(images)
    first = n // 2 if first is None else first
    order = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed)).tolist()[first:]
    return {"inputs": torch.from_numpy(np.stack([images[i][0] for i in order])),
            "labels": torch.tensor([images[i][1] for i in order], dtype=torch.int64)}


def tree_digest(folder: Path) -> str:
    """SHA-256 over relative paths and bytes of every file below ``folder``."""
    h = hashlib.sha256()
    folder = Path(folder)
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        h.update(p.relative_to(folder).as_posix().encode() + b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()


def load_arrays(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All images of ``split`` as a float array (N, H, W, 3) in [0, 1] and labels (N,)."""
    xs, ys = [], []
    for label, cls in enumerate(CLASSES):
        for p in sorted((Path(folder) / split / cls).iterdir()):
            xs.append(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255.0)
            ys.append(label)
    return np.stack(xs), np.asarray(ys)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write the synthetic cats-vs-dogs data set.")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=300, help="training images per class")
    ap.add_argument("--val", type=int, default=150, help="validation images per class")
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args(argv)
    folder = make_cats_and_dogs(args.out_dir, args.train, args.val, args.size, args.seed)
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
