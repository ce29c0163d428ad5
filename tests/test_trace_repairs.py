"""The packet trace behind README's "Behaviour on real links": the relay's record of clear RTP/RTCP
headers (tests/netpath.py) and bench/trace_repairs.py's reading of it, on made-up packets."""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import Any

from netpath import Relay

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import trace_repairs

RUNNER_SSRC, VIEWER_SSRC, RTX_SSRC = 0x11111111, 0x22222222, 0x33333333


def rtp(ssrc: int, seq: int, *, padding: bool = False, marker: bool = False, pt: int = 109, ts: int = 9000) -> bytes:
    first = 0x80 | (0x20 if padding else 0)
    return struct.pack("!BBHII", first, (0x80 if marker else 0) | pt, seq, ts, ssrc) + bytes(40)


def rtcp_nack(sender: int) -> bytes:
    return struct.pack("!BBHII", 0x81, 205, 3, sender, RUNNER_SSRC) + bytes(4)


def test_the_relay_records_the_clear_headers_and_the_fate() -> None:
    relay = Relay(("127.0.0.1", 9), "127.0.0.1", 0.0, 0.0, seed=1)
    relay.record(True, ("127.0.0.1", 5000), rtp(RUNNER_SSRC, 65535, padding=True, marker=True), True)
    assert relay.records is None  # nothing is kept unless tracing
    relay.records = []
    relay.record(True, ("127.0.0.1", 5000), rtp(RUNNER_SSRC, 65535, padding=True, marker=True, ts=123), True)
    relay.record(False, ("127.0.0.1", 5000), rtcp_nack(0xABCDEF01), False)
    relay.record(True, ("127.0.0.1", 5000), b"\x00\x01" + bytes(30), True)  # STUN: left out
    (up, nack) = relay.records
    assert up[1:] == ["u", 1, 5000, 52, "rtp", 109, 1, 1, RUNNER_SSRC, 65535, 123]
    assert nack[1:] == ["d", 0, 5000, 16, "rtcp", 205, 1, 0xABCDEF01]


def trace(up: list[tuple[float, int, bool, bool]], nacks: list[float],
          down: list[tuple[float, int, int, bool]]) -> dict[str, Any]:
    """Runner leg: (t, seq, padding, passed) of the video going up and NACKs coming down; browser
    leg: (t, ssrc, seq, passed) going down."""
    runner = [[t, "u", int(ok), 5000, 1000, "rtp", 109, 0, int(pad), RUNNER_SSRC, seq, 0] for t, seq, pad, ok in up]
    runner += [[t, "d", 1, 5000, 20, "rtcp", 205, 1, 1] for t in nacks]
    browser = [[t, "d", int(ok), 6000, 1000, "rtp", 102 if ssrc == VIEWER_SSRC else 103, 0, 0, ssrc, seq, 0]
               for t, ssrc, seq, ok in down]
    return {"clocks": [100.0, 0.0, 100.0, 1000.0], "frame_gaps": {"times": [0.0, 100.0, 1100.0]},
            "relays": {"runner": sorted(runner), "browser": browser},
            "runner_events": [{"event": "nack_unanswered", "nacks": 5, "resent": 0,
                               "timestamp": "1970-01-01T00:16:40.500000+00:00"}]}


def test_each_loss_is_told_by_leg_and_repair() -> None:
    up = [(100.00 + i * 0.01, 500 + i, False, True) for i in range(10)]
    up[2] = (100.02, 502, False, False)  # a video packet lost going up ...
    up.append((100.12, 502, False, True))  # ... sent again at the first NACK
    up[5] = (100.05, 505, True, False)  # a padding packet lost going up: never sent again
    down = [(100.01 + i * 0.01, VIEWER_SSRC, 300 + i, True) for i in range(10) if i not in (2, 5)]
    down.append((100.13, VIEWER_SSRC, 302, True))  # the late packet, forwarded
    down[6] = (down[6][0], VIEWER_SSRC, down[6][2], False)  # lost on the browser's leg ...
    down.append((down[6][0] + 0.1, RTX_SSRC, 1, True))  # ... repaired by RTX
    result = trace_repairs.analyse(trace(sorted(up), [100.07, 100.15, 100.25, 100.4, 100.6], sorted(down)), 1.5)
    by_seq = {loss["seq"]: loss for loss in result["downlink"]}
    assert by_seq[302]["repaired"] == "late on the video stream"
    assert by_seq[305]["repaired"] is None and by_seq[305]["runner_leg_drop"]["padding"] is True
    assert by_seq[down[6][2]]["lost_on"] == "browser leg"
    assert by_seq[down[6][2]]["repaired"] == "an RTX packet followed"
    assert set(by_seq) == {302, 305, down[6][2]}
    padding = [u for u in result["uplink"] if u["padding"]]
    assert len(padding) == 1 and padding[0]["resent_after_s"] is None and padding[0]["nacks"] == 5
    media = [u for u in result["uplink"] if not u["padding"]]
    assert media[0]["resent_after_s"] == 0.1
    # The runner's keyframe at 100.5 (wall 1000.5) follows the padding loss.
    (ask,) = result["asks"]
    assert ask["t"] == 100.5 and [u["seq"] for u in ask["padding_lost"]] == [505]
    # The freeze (0.1 -> 1.1 s on the page's clock) holds the losses from 0.3 s before it.
    (freeze,) = result["freezes"]
    assert freeze["gap_ms"] == 1000 and {x["seq"] for x in freeze["losses"]} == {302, 305, down[6][2]}
