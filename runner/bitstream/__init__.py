"""The bitstream layer: H.264/H.265 Annex B byte streams, emulation prevention and bit reading.

Pure bytes-in/bytes-out code shared by the media pipeline (runner.media) and E2EE (runner.e2ee).
"""
