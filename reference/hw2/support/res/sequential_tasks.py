"""Synthetic sequence tasks, generated on the fly with numpy.

The temporal-order task is experiment 6a of Hochreiter & Schmidhuber (1997),
"Long Short-Term Memory": a sequence starts with ``B``, ends with ``E``, holds
random distractors from {a, b, c, d} and, at two positions t1 < t2, one of the
relevant symbols X or Y. The class is the ordered pair: XX -> Q, XY -> R,
YX -> S, YY -> U.

Reproducibility note: passing ``seed`` seeds numpy's *global* generator and
every batch is drawn from that global stream. Notebooks rely on this (two
generators built one after the other share one stream), so it is kept.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Sequence

import numpy as np


def pad_sequences(sequences: Sequence[np.ndarray], maxlen: int | None = None, dtype: str = "int32",
                  padding: str = "pre", truncating: str = "pre", value: float = 0.0) -> np.ndarray:
    """Stack variable-length sequences into one array, padding (or cutting) to ``maxlen``.

    Each sequence is an array of shape (length, *features); the result has shape
    (n, maxlen, *features). Padding and truncation happen at the start ("pre")
    or the end ("post").
    """
    if padding not in ("pre", "post") or truncating not in ("pre", "post"):
        raise ValueError("padding and truncating must be 'pre' or 'post'")
    arrays = [np.asarray(s) for s in sequences]
    if maxlen is None:
        maxlen = max((len(a) for a in arrays), default=0)
    feature_shape: tuple[int, ...] = ()
    for a in arrays:
        if len(a):
            feature_shape = a.shape[1:]
            break
    out = np.full((len(arrays), maxlen) + feature_shape, value, dtype=dtype)
    for i, a in enumerate(arrays):
        if not len(a):
            continue
        cut = a[-maxlen:] if truncating == "pre" else a[:maxlen]
        if padding == "pre":
            out[i, maxlen - len(cut):] = cut
        else:
            out[i, :len(cut)] = cut
    return out


def to_categorical(y: Sequence[int] | np.ndarray, num_classes: int | None = None,
                   dtype: str = "float32") -> np.ndarray:
    """One-hot encode integer labels: shape (*y.shape, num_classes)."""
    y = np.asarray(y, dtype="int64")
    shape = y.shape
    flat = y.ravel()
    if num_classes is None:
        num_classes = int(flat.max()) + 1 if flat.size else 0
    out = np.zeros((flat.size, num_classes), dtype=dtype)
    out[np.arange(flat.size), flat] = 1
    return out.reshape(shape + (num_classes,))


class TemporalOrderExp6aSequence:
    """Batches of the temporal-order task; indexing returns a fresh random batch.

    ``x`` batches are one-hot int32 arrays of shape (batch_size, maxlen, 8),
    zero-padded at the front to ``maxlen = length_range[1]``; ``y`` batches are
    one-hot float32 arrays of shape (batch_size, 4). Ranges are half-open, as
    for ``np.random.randint``.
    """

    class DifficultyLevel(IntEnum):
        EASY = 0
        NORMAL = 1
        MODERATE = 2
        HARD = 3
        NIGHTMARE = 4

    def __init__(self, length_range: tuple[int, int] = (100, 111), t1_range: tuple[int, int] = (10, 21),
                 t2_range: tuple[int, int] = (50, 61), batch_size: int = 32, seed: int | None = None):
        self.classes = ["Q", "R", "S", "U"]
        self.relevant_symbols = ["X", "Y"]
        self.distraction_symbols = ["a", "b", "c", "d"]
        self.start_symbol = "B"
        self.end_symbol = "E"
        self.length_range = length_range
        self.t1_range = t1_range
        self.t2_range = t2_range
        self.batch_size = batch_size
        if seed is not None:
            np.random.seed(seed)

        all_symbols = (self.relevant_symbols + self.distraction_symbols
                       + [self.start_symbol, self.end_symbol])
        self.n_symbols = len(all_symbols)
        self.n_classes = len(self.classes)
        self.s_to_idx = {s: i for i, s in enumerate(all_symbols)}
        self.idx_to_s = {i: s for i, s in enumerate(all_symbols)}
        self.c_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.idx_to_c = {i: c for i, c in enumerate(self.classes)}
        # Pair of relevant symbols (first, second) for each class.
        self._pairs = {"Q": ("X", "X"), "R": ("X", "Y"), "S": ("Y", "X"), "U": ("Y", "Y")}

    def generate_pair(self) -> tuple[str, str]:
        """One (sequence, class) pair, drawn from numpy's global generator."""
        length = np.random.randint(self.length_range[0], self.length_range[1])
        t1 = np.random.randint(self.t1_range[0], self.t1_range[1])
        t2 = np.random.randint(self.t2_range[0], self.t2_range[1])
        x = np.random.choice(self.distraction_symbols, length)
        x[0] = self.start_symbol
        x[-1] = self.end_symbol
        y = str(np.random.choice(self.classes))
        x[t1], x[t2] = self._pairs[y]
        return "".join(x), y

    def encode_x(self, x: str) -> np.ndarray:
        idx = [self.s_to_idx[s] for s in x]
        return to_categorical(idx, num_classes=self.n_symbols, dtype="int32")

    def encode_y(self, y: str) -> np.ndarray:
        return to_categorical(self.c_to_idx[y], num_classes=self.n_classes)

    def decode_x(self, x: np.ndarray) -> str:
        x = np.asarray(x)
        x = x[np.abs(x).sum(axis=1) > 0]  # drop the zero padding rows
        return "".join(self.idx_to_s[int(i)] for i in np.argmax(x, axis=1))

    def decode_y(self, y: np.ndarray) -> str:
        return self.idx_to_c[int(np.argmax(y))]

    def encode_x_batch(self, x_batch: Sequence[str]) -> np.ndarray:
        return pad_sequences([self.encode_x(x) for x in x_batch], maxlen=self.length_range[1])

    def encode_y_batch(self, y_batch: Sequence[str]) -> np.ndarray:
        return np.array([self.encode_y(y) for y in y_batch], dtype="float32")

    def decode_x_batch(self, x_batch: np.ndarray) -> list[str]:
        return [self.decode_x(x) for x in x_batch]

    def decode_y_batch(self, y_batch: np.ndarray) -> list[str]:
        return [self.decode_y(y) for y in y_batch]

    def __len__(self) -> int:
        # A nominal epoch of about 1000 sequences.
        return int(1000.0 / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        # ``index`` is ignored: every access draws a new batch from the stream.
        batch_x, batch_y = [], []
        for _ in range(self.batch_size):
            x, y = self.generate_pair()
            batch_x.append(x)
            batch_y.append(y)
        return self.encode_x_batch(batch_x), self.encode_y_batch(batch_y)

    _PREDEFINED = {
        DifficultyLevel.EASY: ((7, 9), (1, 3), (4, 6)),
        DifficultyLevel.NORMAL: ((30, 41), (2, 6), (20, 28)),
        DifficultyLevel.MODERATE: ((60, 81), (10, 21), (45, 55)),
        DifficultyLevel.HARD: ((100, 111), (10, 21), (50, 61)),
        DifficultyLevel.NIGHTMARE: ((300, 501), (10, 81), (250, 291)),
    }

    @staticmethod
    def get_predefined_generator(difficulty_level: int, batch_size: int = 32,
                                 seed: int = 8382) -> "TemporalOrderExp6aSequence":
        lengths, t1, t2 = TemporalOrderExp6aSequence._PREDEFINED[
            TemporalOrderExp6aSequence.DifficultyLevel(difficulty_level)]
        return TemporalOrderExp6aSequence(lengths, t1, t2, batch_size, seed)
