"""Replay runner/nackwatch.py's NackWatch over traces of ``bench_network.py --trace DIR``: how soon
after each padding packet lost on the runner's leg (a hole nobody can fill) the watch would ask
for a keyframe, and how often it would ask without one, for the committed settings and others.

The counters the publisher reads from the SDK are rebuilt from the runner's relay: NACK packets
from the server (shifted by the leg's one-way delay, from the trace's name) and the video
packets the runner sent again, read every NACK_WATCH_POLL_S as the publisher does.

    python bench/nackwatch_replay.py DIR/trace-2M-40ms-1pct.json [more traces ...]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import trace_repairs as tr  # noqa: E402

from runner.nackwatch import NACK_WATCH_POLL_S, NackWatch  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "committed": {},
    "4 NACKs in 0.5 s / 8 RTT (first version)": {"min_nacks": 4, "window_s": 0.5, "window_rtts": 8},
    "2 NACKs in 0.3 s / 4 RTT": {"min_nacks": 2},
}
WITHIN_S = 1.5  # a keyframe ask this long after a loss answers it


def replay(trace: dict[str, Any], one_way_s: float, settings: dict[str, Any]) -> tuple[list[float], list[float]]:
    """(the padding losses' times, the watch's asks), in the relay's clock."""
    runner = tr.parse(trace["relays"]["runner"])
    up = [p for p in runner.packets if p.up]
    main, _ = tr.streams(up)
    up = [p for p in up if p.ssrc == main]
    seen: set[int] = set()
    resends = []
    for p in up:
        if p.seq in seen:
            resends.append(p.t)
        seen.add(p.seq)
    nacks = sorted(f.t + one_way_s for f in runner.feedback if not f.up and f.kind == tr.RTCP_NACK and f.passed)
    holes = [p.t for p in up if not p.passed and p.padding]
    watch, asks, t = NackWatch(**settings), [], up[0].t
    rtt = 2 * one_way_s + 0.01
    while t < up[-1].t:
        if watch.update(t, sum(x <= t for x in nacks), sum(x <= t for x in resends), rtt):
            asks.append(t)
        t += NACK_WATCH_POLL_S
    return holes, asks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", nargs="+", type=Path)
    args = parser.parse_args()
    for name, settings in VARIANTS.items():
        holes = asked = unprompted = total = 0
        delays: list[float] = []
        for path in args.traces:
            match = re.search(r"-(\d+)ms-", path.name)
            one_way = int(match.group(1)) / 1000 if match else 0.04
            losses, asks = replay(json.loads(path.read_text()), one_way, settings)
            holes += len(losses)
            total += len(asks)
            for loss in losses:
                after = [a - loss for a in asks if loss <= a <= loss + WITHIN_S]
                if after:
                    asked += 1
                    delays.append(after[0])
            unprompted += sum(not any(a - 1.0 <= loss <= a for loss in losses) for a in asks)
        delays.sort()
        median = f"{statistics.median(delays) * 1000:.0f}" if delays else "-"
        p90 = f"{delays[int(0.9 * len(delays))] * 1000:.0f}" if delays else "-"
        print(f"{name}: {holes} padding packets lost, {asked} asked for within {WITHIN_S} s "
              f"(median {median} ms, p90 {p90} ms after the loss); {total} asks, {unprompted} without "
              "a padding loss in the second before")


if __name__ == "__main__":
    main()
