"""Attention maps as pictures: the PNG figure of `record --attention` and `report --plots`
(every layer and head of one window, the paper's attention figure), and the colours and
pooling the app's heatmap panel uses. numpy and PIL only (no torch, no matplotlib), so
the app and a machine without the plots extra draw them the same way.

Colour is sqrt(weight / the map's largest weight) on a dark-to-light ramp: attention is
peaked (a few keys take most of a row), and the square root keeps the weaker, structured
part of a row visible beside them. The token kinds run along the top and left edges
(observation, action, reward, value), a line marks where the plan's own tokens begin
after the context it was planned from, and the keys the model's mask hides (later tokens,
value tokens), whose weight is exactly 0, are light grey.
"""

from __future__ import annotations

import numpy as np

# dark blue -> teal -> yellow, a perceptually ordered ramp (viridis' anchors)
RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)
# token kinds: observation, action, reward, value
KIND_COLOURS = np.array([[90, 160, 255], [255, 150, 40], [80, 200, 90], [170, 170, 170]], dtype=np.uint8)
KIND_NAMES = ("observation", "action", "reward", "value")
PLAN_LINE = np.array([255, 60, 60], dtype=np.uint8)
HIDDEN = np.array([225, 225, 225], dtype=np.uint8)  # keys the model's mask hides (weight exactly 0)


def colours(x: np.ndarray) -> np.ndarray:
    """RGB uint8 [..., 3] of values in [0, 1] (clipped) along RAMP."""
    x = np.clip(np.nan_to_num(x), 0.0, 1.0) * (len(RAMP) - 1)
    lo = np.minimum(x.astype(int), len(RAMP) - 2)
    frac = (x - lo)[..., None]
    return np.round(RAMP[lo] * (1 - frac) + RAMP[lo + 1] * frac).astype(np.uint8)


def intensity(weights: np.ndarray) -> np.ndarray:
    """What a map's colour shows: sqrt(weight / the map's largest weight), in [0, 1]."""
    top = float(np.max(weights)) if weights.size else 0.0
    return np.sqrt(weights / top) if top > 0 else np.zeros_like(weights)


def token_kinds(tokens: int, observation_dim: int, action_dim: int) -> np.ndarray:
    """Kind of each window position (0 observation, 1 action, 2 reward, 3 value); windows
    start at dimension 0."""
    dim = np.arange(tokens) % (observation_dim + action_dim + 2)
    return np.select([dim < observation_dim, dim < observation_dim + action_dim,
                      dim == observation_dim + action_dim], [0, 1, 2], 3)


def pool(weights: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """`weights` [t_r, t_c] resampled to exactly [rows, cols]: output cell i spans tokens
    [floor(i t / n), floor((i + 1) t / n)) (at least one), averaged; a map smaller than
    the output repeats its tokens. NaN entries (blank) are left out of the means; a cell
    of NaN only stays NaN."""

    def spans(t: int, n: int) -> np.ndarray:  # [n, t]: which tokens each output cell averages
        lo = np.arange(n) * t // n
        hi = np.maximum(lo + 1, (np.arange(n) + 1) * t // n)
        tok = np.arange(t)
        return ((tok >= lo[:, None]) & (tok < hi[:, None])).astype(np.float64)

    R, C = spans(weights.shape[0], max(rows, 1)), spans(weights.shape[1], max(cols, 1))
    seen = ~np.isnan(weights)
    total = R @ np.where(seen, weights, 0.0) @ C.T
    count = R @ seen.astype(np.float64) @ C.T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def attention_image(weights: np.ndarray, observation_dim: int, action_dim: int, context: int,
                    title: str, pixels: int = 2) -> np.ndarray:
    """RGB uint8 image of maps `weights` [L, H, t, t]: one row per layer, one column per
    head and a last column with the mean over heads; `pixels` per token; `context`
    tokens precede the plan's (the line)."""
    from PIL import Image, ImageDraw

    L, H, t, _ = weights.shape
    strip, gap, left, top = 3, 6, 64, 34
    cell = t * pixels + strip
    width, height = left + (H + 1) * (cell + gap), top + L * (cell + gap) + 18
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    kinds = np.repeat(KIND_COLOURS[token_kinds(t, observation_dim, action_dim)], pixels, axis=0)
    for layer in range(L):
        for column in range(H + 1):
            w = weights[layer, column] if column < H else weights[layer].mean(0)
            shade = np.where((w == 0)[..., None], HIDDEN, colours(intensity(w)))  # 0: a key the mask hides
            image = np.repeat(np.repeat(shade, pixels, 0), pixels, 1)
            if 0 < context < t:
                image[:, context * pixels] = PLAN_LINE
                image[context * pixels, :] = PLAN_LINE
            y, x = top + layer * (cell + gap), left + column * (cell + gap)
            canvas[y : y + strip, x + strip : x + cell] = kinds[None]
            canvas[y + strip : y + cell, x : x + strip] = kinds[:, None]
            canvas[y + strip : y + cell, x + strip : x + cell] = image
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    draw.text((4, 4), title, fill=(0, 0, 0))
    for column in range(H + 1):
        draw.text((left + column * (cell + gap), top - 12), f"head {column}" if column < H else "mean", fill=(0, 0, 0))
    for layer in range(L):
        draw.text((4, top + layer * (cell + gap) + cell // 2), f"layer {layer}", fill=(0, 0, 0))
    x = 4
    for name, colour in zip(KIND_NAMES, KIND_COLOURS):
        draw.rectangle([x, height - 13, x + 8, height - 5], fill=tuple(int(c) for c in colour))
        draw.text((x + 11, height - 15), name, fill=(0, 0, 0))
        x += 11 + 7 * len(name) + 12
    draw.line([x, height - 9, x + 10, height - 9], fill=tuple(int(c) for c in PLAN_LINE), width=2)
    draw.text((x + 14, height - 15), "the plan begins; rows: queries, columns: keys", fill=(0, 0, 0))
    return np.asarray(picture)
