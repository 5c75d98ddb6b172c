"""Plot style and LSTM-state colouring for the sequence-classification notebook."""
from __future__ import annotations

from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import HTML, display
from matplotlib import colormaps
from matplotlib.colors import to_hex

# Diverging map: saturated at sigmoid -> 0 and sigmoid -> 1, neutral near 0.5.
_CMAP = colormaps["coolwarm"]
COLOURBAR_RANGE = (-2.5, 2.5)


def set_default(figsize: tuple[float, float] = (10, 10), dpi: int = 100) -> None:
    """Dark figure style used throughout the course notebooks."""
    plt.style.use(["dark_background", "bmh"])
    plt.rc("axes", facecolor="k")
    plt.rc("figure", facecolor="k")
    plt.rc("figure", figsize=figsize, dpi=dpi)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def _colour(value: float) -> str:
    """Hex colour of a raw state value, through the sigmoid squashing."""
    return to_hex(_CMAP(float(_sigmoid(np.asarray(value)))))


def _span(text: str, value: float) -> str:
    return (f'<span style="background-color:{_colour(value)};color:black;'
            f'font-family:monospace;padding:0 1px">{text}</span>')


def print_colourbar(steps: int = 11) -> None:
    """Show the colour scale of state values from -2.5 to 2.5."""
    lo, hi = COLOURBAR_RANGE
    values = np.linspace(lo, hi, steps)
    display(HTML("".join(_span(f"{v:+.1f}", v) for v in values)))


def plot_state(data, state, b: int, decoder: Callable[[np.ndarray], str]) -> None:
    """Colour the symbols of sample ``b`` by each hidden unit's state.

    ``data`` is the padded one-hot batch (B, T, n_symbols); ``state`` holds one
    value per time step, sample and unit, shape (T, B, hidden). Padding is at
    the front, so the decoded sequence lines up with the last steps.
    """
    x = np.asarray(data[b].detach().cpu() if hasattr(data, "detach") else data[b])
    s = np.asarray(state.detach().cpu() if hasattr(state, "detach") else state)
    text = decoder(x)
    steps = s[s.shape[0] - len(text):, b, :]
    for unit in range(s.shape[2]):
        cells = "".join(_span(ch, v) for ch, v in zip(text, steps[:, unit]))
        display(HTML(f'<div style="margin:1px 0"><code>{unit:2d}</code> {cells}</div>'))
