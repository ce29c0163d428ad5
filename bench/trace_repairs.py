"""What happened to every video packet lost on an impaired path: read a trace written by
``bench_network.py --trace DIR`` (the two relays' RTP/RTCP headers while the terminal scrolled) and
print, per loss, on which leg it was lost, who asked for it again and whether and how it reached
the browser; then the browser's freezes with the losses inside them.

SRTP leaves the RTP header in the clear (SSRC, sequence number, timestamp, marker, padding) and
SRTCP the first RTCP header and sender SSRC: enough to see a loss, a NACK or PLI being sent, a
retransmission on the RTX stream (its original sequence number is encrypted: a retransmission is
matched to a loss by time, the first on that stream after it) and a late packet forwarded on the
video stream itself. The relay sees a packet before the leg's tbf queue going to the server and
after the one coming from it, so a packet the browser leg's tbf dropped (a full queue) counts as
"never sent by the server".

    python bench/trace_repairs.py DIR/trace-2M-40ms-1pct.json [--window-s 1.5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

RTCP_NACK = (205, 1)  # transport feedback, generic NACK


@dataclass
class Packet:
    t: float
    up: bool
    passed: bool
    size: int
    pt: int
    padding: bool
    ssrc: int
    seq: int  # unwrapped per SSRC


@dataclass
class Feedback:
    t: float
    up: bool
    passed: bool
    kind: tuple[int, int]


@dataclass
class Leg:
    packets: list[Packet] = field(default_factory=list)
    feedback: list[Feedback] = field(default_factory=list)


def parse(records: list[list[Any]]) -> Leg:
    leg, last = Leg(), {}
    for r in records:
        t, d, passed, _port, size, kind = r[:6]
        if kind == "rtcp":
            leg.feedback.append(Feedback(t, d == "u", bool(passed), (r[6], r[7])))
            continue
        pt, _marker, padding, ssrc, seq, _ts = r[6:12]
        prev = last.get(ssrc)
        if prev is not None:  # unwrap the 16-bit sequence number against the last one seen
            delta = (seq - prev) & 0xFFFF
            seq = prev + (delta if delta < 0x8000 else delta - 0x10000)
        last[ssrc] = seq
        leg.packets.append(Packet(t, d == "u", bool(passed), size, pt, bool(padding), ssrc, seq))
    return leg


def streams(packets: list[Packet]) -> tuple[int, list[int]]:
    """The video stream (the SSRC with the most packets) and the others of the same direction."""
    counts = Counter(p.ssrc for p in packets if not p.padding)
    main = counts.most_common(1)[0][0]
    return main, [s for s in counts if s != main]


def first_after(times: list[float], t: float, window: float) -> float | None:
    return next((x - t for x in times if t <= x <= t + window), None)


def analyse(trace: dict[str, Any], window_s: float) -> dict[str, Any]:
    runner, browser = parse(trace["relays"]["runner"]), parse(trace["relays"]["browser"])
    up = [p for p in runner.packets if p.up]
    down = [p for p in browser.packets if not p.up]
    up_main, up_other = streams(up)
    down_main, down_other = streams(down)
    down_rtx = sorted(p.t for p in down if p.ssrc in down_other and not p.padding and p.passed)
    server_nacks = sorted(f.t for f in runner.feedback if not f.up and f.kind == RTCP_NACK and f.passed)

    # The runner's leg: its video stream has no RTX (see the module's docstring of
    # bench/bench_network.py's --trace): a repair is the same sequence number sent again.
    sent_again: dict[int, list[float]] = {}
    for p in up:
        if p.ssrc == up_main and p.passed:
            sent_again.setdefault(p.seq, []).append(p.t)
    uplink = []
    for p in up:
        if p.ssrc == up_main and not p.passed:
            again = [t for t in sent_again.get(p.seq, []) if t > p.t]
            uplink.append({"t": p.t, "seq": p.seq, "padding": p.padding,
                           "nack_after_s": first_after(server_nacks, p.t, window_s),
                           "nacks": sum(p.t <= x <= p.t + window_s for x in server_nacks),
                           "resent_after_s": round(again[0] - p.t, 3) if again else None,
                           })

    # The server's video stream as the browser leg's relay saw it: each sequence number's first
    # arrival, and whether one copy of it reached the browser.
    main = [p for p in down if p.ssrc == down_main and not p.padding]
    first_seen: dict[int, Packet] = {}
    delivered: dict[int, float] = {}
    highest, highest_t = None, {}
    for p in main:
        first_seen.setdefault(p.seq, p)
        if p.passed and p.seq not in delivered:
            delivered[p.seq] = p.t
        if highest is None or p.seq > highest:
            highest = p.seq
            highest_t[p.seq] = p.t
    downlink = []
    lo, hi = min(first_seen), max(first_seen)
    for seq in range(lo, hi + 1):
        seen = first_seen.get(seq)
        if seen is not None and seen.passed and delivered.get(seq) == seen.t:
            # Delivered the first time; late if a higher number had come before it.
            later = [s for s in range(seq + 1, seq + 64) if s in highest_t and highest_t[s] < seen.t]
            if not later:
                continue
            gap_t = min(highest_t[s] for s in later)
            downlink.append({"t": gap_t, "seq": seq, "lost_on": "runner leg or server",
                             "repaired": "late on the video stream", "after_s": round(seen.t - gap_t, 3)})
            continue
        if seen is None:
            # Never came from the server: lost on the runner's leg and not resent, or dropped by
            # the browser leg's tbf queue. The gap shows at the next number.
            nxt = next((first_seen[s].t for s in range(seq + 1, hi + 1) if s in first_seen), None)
            cause = [u for u in uplink if nxt is not None and nxt - 0.3 <= u["t"] <= nxt
                     and u["resent_after_s"] is None]
            downlink.append({"t": nxt, "seq": seq, "lost_on": "runner leg, server or tbf", "repaired": None,
                             "after_s": None, "runner_leg_drop": cause[-1] if cause else None})
            continue
        # Dropped by the browser leg's relay: delivered later (a resend on the video stream), or
        # repaired by the RTX stream, or not at all.
        if seq in delivered:
            downlink.append({"t": seen.t, "seq": seq, "lost_on": "browser leg",
                             "repaired": "resent on the video stream", "after_s": round(delivered[seq] - seen.t, 3)})
        else:
            rtx = first_after(down_rtx, seen.t, window_s)
            downlink.append({"t": seen.t, "seq": seq, "lost_on": "browser leg",
                             "repaired": "an RTX packet followed" if rtx is not None else None,
                             "after_s": round(rtx, 3) if rtx is not None else None})
    # The browser's freezes, in the relays' clock.
    c0, perf, c1 = trace["clocks"][:3]
    offset = (c0 + c1) / 2 - perf / 1000
    gaps = trace["frame_gaps"]
    freezes = []
    times = gaps["times"]
    for a, b in itertools.pairwise(times):
        if b - a > 250:
            start, end = a / 1000 + offset, b / 1000 + offset
            freezes.append({
                "start": start, "gap_ms": round(b - a),
                "losses": [x for x in downlink if x["t"] is not None and start - 0.3 <= x["t"] <= end],
                "uplink_losses": [x for x in uplink if start - 0.4 <= x["t"] <= end],
            })
    # The runner's keyframes for NACKs it could not answer (runner/nackwatch.py), against what
    # the runner's leg lost in the second before each.
    asks = []
    if len(trace["clocks"]) > 3:
        to_mono = trace["clocks"][2] - trace["clocks"][3]
        for event in trace.get("runner_events", []):
            at = datetime.fromisoformat(event["timestamp"]).timestamp() + to_mono
            before = [u for u in uplink if at - 1.0 <= u["t"] <= at]
            asks.append({"t": at, "nacks": event["nacks"], "resent": event["resent"],
                         "padding_lost": [u for u in before if u["padding"]],
                         "media_lost": [u for u in before if not u["padding"]]})
    return {"up_main": up_main, "asks": asks, "up_other": up_other, "down_main": down_main, "down_other": down_other,
            "uplink": uplink, "downlink": downlink, "freezes": freezes,
            "counts": {"up_packets": len(up), "server_nacks": len(server_nacks),
                       "down_packets": len(down), "down_rtx": len(down_rtx)}}


def report(result: dict[str, Any]) -> str:
    lines = [f"counts: {result['counts']}"]
    up = result["uplink"]
    for padding in (False, True):
        drops = [x for x in up if x["padding"] == padding]
        resent = [x["resent_after_s"] for x in drops if x["resent_after_s"] is not None]
        median = f" (median {statistics.median(resent) * 1000:.0f} ms)" if resent else ""
        lines.append(f"runner leg: {len(drops)} {'padding' if padding else 'media'} packets of the video stream "
                     f"dropped towards the server; the server NACKed {sum(x['nacks'] > 0 for x in drops)} "
                     f"({sum(x['nacks'] for x in drops)} NACKs), the runner sent {len(resent)} again{median}")
    outcome = Counter((x["lost_on"], x["repaired"]) for x in result["downlink"])
    lines.append("video packets missing from the browser's stream, by where lost and how repaired:")
    for (where, how), n in outcome.most_common():
        after = [x["after_s"] for x in result["downlink"] if (x["lost_on"], x["repaired"]) == (where, how)
                 and x["after_s"] is not None]
        med = f", median {statistics.median(after) * 1000:.0f} ms" if after else ""
        lines.append(f"  {n:4d}  lost on {where}: {how or 'never repaired'}{med}")
    asks = result["asks"]
    if asks:
        after_padding = [a for a in asks if a["padding_lost"]]
        delays = [a["t"] - a["padding_lost"][-1]["t"] for a in after_padding]
        median = f" (median {statistics.median(delays) * 1000:.0f} ms after the loss)" if delays else ""
        lines.append(f"the runner's keyframes for unanswered NACKs: {len(asks)}, {len(after_padding)} within a second "
                     f"of a padding packet lost on its leg{median}; the others: "
                     + "; ".join(f"{a['nacks']} NACKs, {a['resent']} sent again, {len(a['media_lost'])} video "
                                 "packets lost in the second before" for a in asks if not a["padding_lost"]))
    for f in result["freezes"]:
        lines.append(f"freeze {f['gap_ms']} ms: video packets dropped on the runner's leg {len(f['uplink_losses'])} "
                     f"({sum(x['padding'] for x in f['uplink_losses'])} padding); missing from the browser's stream: "
                     + "; ".join(f"{x['seq']} on {x['lost_on']} -> {x['repaired'] or 'never'}"
                                 + (f" {x['after_s'] * 1000:.0f} ms" if x["after_s"] is not None else "")
                                 + (" (a padding packet lost on the runner's leg)"
                                    if (x.get("runner_leg_drop") or {}).get("padding") else "")
                                 for x in f["losses"]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", type=Path)
    parser.add_argument("--window-s", type=float, default=1.5, help="how long after a loss a repair counts")
    parser.add_argument("--json", type=Path, help="also write the analysis here")
    args = parser.parse_args()
    result = analyse(json.loads(args.trace.read_text()), args.window_s)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
