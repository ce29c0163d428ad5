"""Luma PSNR of a decoded picture against its source, shared by the network benchmark and tests.

A minimal stand-in: the quality work (issue 15) brings a fuller picture-metrics module (PSNR and
SSIM on I420 luma); when both are merged, this one should go and its users import that one.
Here pictures are RGB(A) as the browser and the X server give them, so luma is computed from RGB
with the BT.601 weights, the same formula the benchmark's in-browser check uses (bench_network.py).
"""

from __future__ import annotations

import math

import numpy as np

PSNR_CAP = 99.0  # identical pictures
LEGIBLE_DB = 36.0  # issue 15's bar for "text legible"


def luma(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3 or 4) RGB[A] uint8 -> (h, w) float luma, 0..255 (BT.601 weights)."""
    rgbf = rgb[..., :3].astype(np.float64)
    return 0.299 * rgbf[..., 0] + 0.587 * rgbf[..., 1] + 0.114 * rgbf[..., 2]


def psnr(ref: np.ndarray, test: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two equally sized pictures (luma planes), in dB."""
    diff = ref.astype(np.float64) - test.astype(np.float64)
    mse = float(np.mean(diff * diff))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(255 * 255 / mse))
