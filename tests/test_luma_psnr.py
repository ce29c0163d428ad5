"""tests/luma_psnr.py: the PSNR the network benchmark and its in-browser check use."""

from __future__ import annotations

import numpy as np

from luma_psnr import PSNR_CAP, luma, psnr


def test_luma_uses_the_bt601_weights() -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], np.uint8)
    assert luma(rgb).tolist() == [[0.299 * 255, 0.587 * 255, 0.114 * 255, 255.0]]


def test_psnr_of_a_known_error() -> None:
    ref = np.zeros((4, 4), np.uint8)
    test = np.full((4, 4), 16, np.uint8)  # MSE 256: 10 log10(65025 / 256) = 24.048 dB
    assert round(psnr(ref, test), 3) == 24.048
    assert psnr(ref, ref) == PSNR_CAP
