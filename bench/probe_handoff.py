"""The runner (``python -m runner``) with every hand-off to the SDK logged, for bench/photon_trace.py.

Configured like the runner (RUNNER_* variables); ``BENCH_HANDOFF_LOG`` names a file that gets one
JSON line per ``Publisher.push``: ``[wall_before, wall_after, timestamp_us, bytes, keyframe,
accepted]`` (wall clock in seconds, comparable with packet captures and the browser's
``performance.timeOrigin``). A repeat (skip picture) shows as a payload of a few dozen bytes.
``BENCH_TRAILING_FRAME_S`` overrides runner.media.scheduling.TRAILING_FRAME_S (experiments).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner import publish  # noqa: E402
from runner.cli import main  # noqa: E402


def install(path: str) -> None:
    log = open(path, "a", buffering=1)  # open for the life of the process
    original = publish.Publisher.push

    def push(self: publish.Publisher, data: bytes, **kw: Any) -> bool:
        before = time.time()
        accepted = original(self, data, **kw)
        log.write(json.dumps([before, time.time(), kw["timestamp_us"], len(data), kw["keyframe"], accepted]) + "\n")
        return accepted

    publish.Publisher.push = push  # type: ignore[method-assign]


if __name__ == "__main__":
    install(os.environ["BENCH_HANDOFF_LOG"])
    if "BENCH_TRAILING_FRAME_S" in os.environ:  # experiments: how soon a change is followed by one more frame
        from runner.media import scheduling

        scheduling.TRAILING_FRAME_S = float(os.environ["BENCH_TRAILING_FRAME_S"])
    sys.exit(main([]))
