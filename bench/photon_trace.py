"""Where input-to-photon time goes, frame by frame, with a packet capture on loopback.

    .venv/bin/python bench/photon_trace.py --trials 50 --gap 2000 2200 --fps 30 [--playout-delay 0 0]
        [--jitter-buffer-target 0] [--env RUNNER_CAPTURE__IDLE_REFRESH_S=0.1] [--out DIR] [--detail 150]
    .venv/bin/python bench/photon_trace.py --report DIR --detail 150     # analyse a kept run again

A development tool behind the README's "first change after a still screen" evidence (not part of
`make bench`; needs tshark/dumpcap and the rights to capture on ``lo``). It starts livekit-server,
Xvfb with the photon scene (bench/scenes.py), the runner under bench/probe_handoff.py (every
hand-off to the SDK logged with the wall clock), headless Chromium with the reference viewer, and
dumpcap on the server's UDP ports. SRTP encrypts payloads, not RTP headers, so every video packet
is known by SSRC, sequence number, RTP timestamp and marker bit on both legs (runner -> server,
server -> browser). Each trial's changed frame is followed from the hand-off through both legs to
the browser's ``requestVideoFrameCallback`` metadata (``receiveTime``, ``rtpTimestamp``).

Prints a line per trial (times in ms after the input: hand-off, first/last packet of the change
on each leg, the browser's receiveTime and callback for the change frame if it was shown itself,
photon = the callback that showed the new colour, browser = photon - arrival) and the stage
percentiles; ``--detail MS`` lists every packet, hand-off and callback around trials slower than
MS; ``--out DIR`` keeps the capture and logs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "tests"), str(ROOT / "bench")]

from run import BITRATES, PASSPHRASE, pct, runner_env, scene  # noqa: E402

from devstack import LiveKitServer, Runner, ViewerServer, Xvfb, mint_token, viewer_link  # noqa: E402

# A trial: wait, move the pointer to the other half, record every decoded frame (rVFC metadata,
# wall clock in ms) until the square has the new colour. Optionally set the screen track's
# jitterBufferTarget first.
TRACE_JS = """
async ([trials, gapMin, gapMax, mon, jbt]) => {
  const video = [...document.querySelectorAll('video')].find((v) => v.videoWidth > 2);
  if (!video) throw new Error('no video element with a picture');
  const T = (t) => performance.timeOrigin + t;
  const receivers = () => {
    const out = [];
    for (const p of window.viewer.room.remoteParticipants.values())
      for (const pub of p.videoTrackPublications.values())
        if (pub.track?.receiver) out.push(pub.track.receiver);
    return out;
  };
  if (jbt !== null) for (const r of receivers()) r.jitterBufferTarget = jbt;
  const inbound = async () => {
    for (const r of receivers()) {
      const stats = await r.getStats();
      for (const s of stats.values()) if (s.type === 'inbound-rtp' && s.kind === 'video') return s;
    }
    return null;
  };
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 8;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const isWhite = () => {
    const w = video.videoWidth, h = video.videoHeight;
    ctx.drawImage(video, w / 2 - 4, h / 2 - 4, 8, 8, 0, 0, 8, 8);
    const d = ctx.getImageData(0, 0, 8, 8).data;
    let sum = 0;
    for (let i = 0; i < d.length; i += 4) sum += d[i] + d[i + 1] + d[i + 2];
    return sum / (d.length / 4) / 3 > 128;
  };
  const before = await inbound();
  const out = [];
  let white = isWhite();
  for (let i = 0; i < trials; i++) {
    await new Promise((r) => setTimeout(r, gapMin + Math.random() * (gapMax - gapMin)));
    const want = !white;
    const frames = [];
    const t0 = performance.now();
    const seen = new Promise((resolve) => {
      const deadline = t0 + 3000;
      const check = (now, m) => {
        const w = isWhite();
        frames.push({ cb: T(now), recv: m.receiveTime ? T(m.receiveTime) : null,
                      pres: T(m.presentationTime), exp: T(m.expectedDisplayTime),
                      proc: m.processingDuration ?? null, rtp: m.rtpTimestamp ?? null, white: w });
        if (w === want) return resolve(T(now));
        if (performance.now() > deadline) return resolve(null);
        video.requestVideoFrameCallback(check);
      };
      video.requestVideoFrameCallback(check);
    });
    await window.viewer.sendInput({ t: 'move', mon, x: want ? 0.75 : 0.25, y: 0.5 });
    const sent = T(performance.now());
    const t1 = await seen;
    const stats = await inbound();
    out.push({ t0: T(t0), sent, seen: t1, frames, stats });
    white = t1 === null ? isWhite() : want;
  }
  const after = await inbound();
  return { trials: out, before, after,
           jitterBufferTarget: receivers().map((r) => r.jitterBufferTarget ?? null) };
}
"""


@dataclass
class Frame:
    ts: int  # RTP timestamp
    first: float  # wall clock of the first packet, s
    last: float  # ... of the last one
    packets: int = 0
    bytes: int = 0
    marker: bool = False
    seqs: list[int] = field(default_factory=list)


@dataclass
class Leg:
    """One direction of video packets on loopback: frames by RTP timestamp, padding and RTX packets."""

    name: str
    frames: dict[tuple[str, int], Frame] = field(default_factory=dict)  # by (SSRC, RTP timestamp)
    padding: list[tuple[float, int]] = field(default_factory=list)  # (time, udp bytes)
    rtx: list[tuple[float, int]] = field(default_factory=list)

    def ordered(self) -> list[Frame]:
        return sorted(self.frames.values(), key=lambda f: f.first)


def read_capture(pcap: Path, server_ports: tuple[int, int]) -> tuple[Leg, Leg]:
    """The uplink (runner -> server) and downlink (server -> browser) video legs of a capture.
    A leg may span several UDP flows and SSRCs (after a resume the runner republishes); the
    video payload type is the one with the most bytes, other payload types (RTX) are counted
    apart, padding-only packets too."""
    fields = ["frame.time_epoch", "udp.srcport", "udp.dstport", "udp.length", "rtp.ssrc", "rtp.p_type",
              "rtp.seq", "rtp.timestamp", "rtp.marker", "rtp.padding"]
    cmd = ["tshark", "-r", str(pcap), "--enable-heuristic", "rtp_udp", "-Y", "rtp", "-T", "fields",
           "-E", "separator=,"] + [a for f in fields for a in ("-e", f)]
    rows = [line.split(",") for line in subprocess.run(cmd, capture_output=True, text=True, check=True)
            .stdout.splitlines()]
    lo, hi = server_ports
    flows: dict[tuple[int, int], int] = defaultdict(int)
    for r in rows:
        flows[(int(r[1]), int(r[2]))] += int(r[3])

    def server(port: int) -> bool:
        return lo <= port <= hi

    legs = []
    for name, toward_server in (("uplink", True), ("downlink", False)):
        mine_flows = {f: n for f, n in flows.items() if server(f[1]) == toward_server and server(f[0]) != toward_server}
        biggest = max(mine_flows.values(), default=0)
        chosen = {f for f, n in mine_flows.items() if n >= biggest / 10}
        mine = [r for r in rows if (int(r[1]), int(r[2])) in chosen]
        by_type: dict[str, int] = defaultdict(int)
        for r in mine:
            by_type[r[5]] += int(r[3])
        video = max(by_type, key=by_type.__getitem__) if by_type else ""
        leg = Leg(name)
        for r in mine:
            t, size = float(r[0]), int(r[3])
            if r[5] != video:
                leg.rtx.append((t, size))
                continue
            if r[9] in ("1", "True"):  # padding only (libwebrtc's probes; the SFU's)
                leg.padding.append((t, size))
                continue
            ts = int(r[7])
            f = leg.frames.setdefault((r[4], ts), Frame(ts, t, t))
            f.first, f.last = min(f.first, t), max(f.last, t)
            f.packets += 1
            f.bytes += size
            f.marker = f.marker or r[8] in ("1", "True")
            f.seqs.append(int(r[6]))
        legs.append(leg)
    return legs[0], legs[1]


def match_in_order(a: list[Frame], b: list[Frame], within: float) -> dict[int, Frame]:
    """Each frame of leg ``a`` (by index) to the first unmatched frame of leg ``b`` that starts
    no earlier than it, within ``within`` seconds, with as many packets and about as many bytes
    (the SFU rewrites header extensions: a few bytes a packet)."""
    out, used = {}, set()
    starts = [f.first for f in b]
    import bisect

    for i, f in enumerate(a):
        j = bisect.bisect_left(starts, f.first - 0.0005)
        while j < len(b) and b[j].first - f.first < within:
            g = b[j]
            if id(g) not in used and g.packets == f.packets and abs(g.bytes - f.bytes) <= 40 * f.packets:
                out[i] = g
                used.add(id(g))
                break
            j += 1
    return out


def match_pushes(pushes: list[list[Any]], leg: Leg) -> dict[int, Frame]:
    """Hand-offs to a leg's frames. libwebrtc stamps RTP with its own millisecond clock when the
    frame reaches its sender, not with the frame's timestamp_us, so by wall clock and size: a
    hand-off is the first unmatched frame that starts within 0.3 s after it and whose UDP bytes
    are its payload plus 12-100 bytes of headers per packet."""
    frames, out, used = leg.ordered(), {}, set()
    starts = [f.first for f in frames]
    import bisect

    for i, p in enumerate(pushes):
        j = bisect.bisect_left(starts, p[0] - 0.001)
        while j < len(frames) and frames[j].first - p[1] < 0.3:
            f = frames[j]
            if id(f) not in used and 12 * f.packets <= f.bytes - p[3] <= 100 * f.packets:
                out[i] = f
                used.add(id(f))
                break
            j += 1
    return out


def analyse(handoffs: list[list[Any]], up: Leg, down: Leg, browser: dict[str, Any]) -> list[dict[str, Any]]:
    pushes = [h for h in handoffs if h[5]]
    matched = match_pushes(pushes, up)
    matched_down = match_pushes(pushes, down)  # when the uplink is not in the capture (ICE over TCP)
    up_frames, down_frames = up.ordered(), down.ordered()
    forwarded = match_in_order(up_frames, down_frames, 0.5)
    up_index = {id(f): i for i, f in enumerate(up_frames)}
    out = []
    for trial in browser["trials"]:
        t0 = trial["t0"] / 1000
        row: dict[str, Any] = {"t0": t0, "photon_ms": None if trial["seen"] is None
                               else round(trial["seen"] - trial["t0"], 1)}
        index = next((i for i, h in enumerate(pushes) if h[0] > t0 and h[3] > 200), None)
        if index is None:
            out.append(row)
            continue
        change = pushes[index]
        row["handoff_ms"] = round((change[1] - t0) * 1000, 1)
        row["bytes"] = change[3]
        fu = matched.get(index)
        fd = forwarded.get(up_index[id(fu)]) if fu else matched_down.get(index)
        if fu:
            row |= {"up_first_ms": round((fu.first - t0) * 1000, 1), "up_last_ms": round((fu.last - t0) * 1000, 1),
                    "up_packets": fu.packets}
        if fd:
            row |= {"down_first_ms": round((fd.first - t0) * 1000, 1),
                    "down_last_ms": round((fd.last - t0) * 1000, 1), "down_packets": fd.packets}
            shown = next((f for f in trial["frames"] if f["rtp"] == fd.ts), None)
            if shown and shown["recv"]:
                row["receive_ms"] = round(shown["recv"] - trial["t0"], 1)
                row["callback_ms"] = round(shown["cb"] - trial["t0"], 1)
            # what came next on each leg, and any padding/RTX in the window
            later = [f for f in down_frames if f.first > fd.first]
            if later:
                row["down_next_ms"] = round((later[0].first - t0) * 1000, 1)
        seen_frame = next((f for f in trial["frames"] if f["white"] == (trial["frames"][-1]["white"])), None)
        if seen_frame and seen_frame["rtp"] is not None and fd is not None and seen_frame["rtp"] != fd.ts:
            row["shown_other_frame"] = True
        prev = browser["trials"][browser["trials"].index(trial) - 1].get("stats") if browser["trials"].index(trial) \
            else browser.get("before")
        cur = trial.get("stats")
        if prev and cur:
            n = cur["jitterBufferEmittedCount"] - prev["jitterBufferEmittedCount"]
            if n:
                row["jb_ms_per_frame"] = round(1000 * (cur["jitterBufferDelay"] - prev["jitterBufferDelay"]) / n, 1)
                row["target_ms_per_frame"] = round(
                    1000 * (cur.get("jitterBufferTargetDelay", 0) - prev.get("jitterBufferTargetDelay", 0)) / n, 1)
            d = cur["framesDecoded"] - prev["framesDecoded"]
            if d:
                row["decode_ms_per_frame"] = round(1000 * (cur["totalDecodeTime"] - prev["totalDecodeTime"]) / d, 1)
        if fd and row["photon_ms"] is not None:  # from the change's arrival at the browser to its display
            row["browser_ms"] = round(row["photon_ms"] - row["down_last_ms"], 1)
        window = (t0, t0 + (row["photon_ms"] or 3000) / 1000)
        row["down_padding"] = sum(1 for t, _ in down.padding if window[0] <= t <= window[1])
        row["down_rtx"] = sum(1 for t, _ in down.rtx if window[0] <= t <= window[1])
        out.append(row)
    return out


def all_packets(pcap: Path) -> list[tuple[float, int, int, int, str]]:
    """Every UDP packet: (time, source port, destination port, UDP length, protocol column)."""
    cmd = ["tshark", "-r", str(pcap), "--enable-heuristic", "rtp_udp", "-T", "fields", "-E", "separator=,",
           "-e", "frame.time_epoch", "-e", "udp.srcport", "-e", "udp.dstport", "-e", "udp.length",
           "-e", "_ws.col.Protocol"]
    out = []
    for line in subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines():
        t, a, b, n, proto = line.split(",", 4)
        out.append((float(t), int(a), int(b), int(n), proto))
    return out


def detail(rows: list[dict[str, Any]], packets: list[tuple[float, int, int, int, str]],
           handoffs: list[list[Any]], browser: dict[str, Any], over_ms: float) -> None:
    """Every packet and hand-off around each slow trial, relative to its input."""
    for i, r in enumerate(rows):
        if (r.get("photon_ms") or 0) <= over_ms:
            continue
        t0 = r["t0"]
        end = t0 + r["photon_ms"] / 1000 + 0.05
        print(f"--- trial {i}: photon {r['photon_ms']} ms")
        events = [(h[0], f"handoff {h[3]} B{' key' if h[4] else ''}") for h in handoffs if t0 - 0.2 <= h[0] <= end]
        events += [(t, f"{a}->{b} {n:5} {proto}") for t, a, b, n, proto in packets if t0 - 0.2 <= t <= end]
        for f in browser["trials"][i]["frames"]:
            ms = {k: f.get(k) and round(f[k] - 1000 * t0, 1) for k in ("recv", "pres", "exp")}
            events.append((f["cb"] / 1000, f"rVFC rtp {f['rtp']} white {f['white']} received {ms['recv']} "
                           f"presented {ms['pres']} expected {ms['exp']} processing {f.get('proc')}"))
        for t, what in sorted(events):
            print(f"  {1000 * (t - t0):8.1f}  {what}")


def summary(rows: list[dict[str, Any]]) -> None:
    keys = ["handoff_ms", "up_first_ms", "up_last_ms", "down_first_ms", "down_last_ms", "receive_ms",
            "callback_ms", "photon_ms", "browser_ms"]
    print("trial " + " ".join(f"{k[:-3]:>10}" for k in keys) + "  pkts up/down  pad rtx")
    for i, r in enumerate(rows):
        print(f"{i:5} " + " ".join(f"{r.get(k, float('nan')) if r.get(k) is not None else float('nan'):10.1f}"
                                   for k in keys)
              + f"  {r.get('up_packets', '-')}/{r.get('down_packets', '-')}  {r.get('down_padding', '-')}"
              f" jb {r.get('jb_ms_per_frame', '-')}/{r.get('target_ms_per_frame', '-')}"
              f" dec {r.get('decode_ms_per_frame', '-')}"
              f" {r.get('down_rtx', '-')}" + ("  next@" + str(r["down_next_ms"]) if "down_next_ms" in r else ""))
    for k in keys:
        vals = [r[k] for r in rows if r.get(k) is not None]
        if vals:
            print(f"{k:14} p50 {pct(vals, 0.5):7.1f}  p95 {pct(vals, 0.95):7.1f}  max {max(vals):7.1f}  n={len(vals)}")
    photon = [r["photon_ms"] for r in rows if r.get("photon_ms") is not None]
    slow = [r for r in rows if (r.get("photon_ms") or 1e9) > 150]
    print(f"photon: {len(photon)}/{len(rows)} seen, mean {statistics.mean(photon):.1f} ms, "
          f"{len(slow)} over 150 ms")


async def trace(args: argparse.Namespace, out: Path) -> None:
    from playwright.async_api import async_playwright

    from realenv import CHROMIUM_ARGS, CHROMIUM_PATH, wait_for_viewer

    handoff_log = out / "handoff.jsonl"
    pcap = out / "capture.pcapng"
    playout_delay = (args.playout_delay[0], args.playout_delay[1]) if args.playout_delay else None
    with (LiveKitServer(playout_delay=playout_delay) as lk, Xvfb(1920, 1080) as x, scene(x.display, "photon"),
          ViewerServer() as vs):
        lo, hi = lk.rtc_udp_range
        cap = subprocess.Popen(["dumpcap", "-q", "-i", "lo", "-f", f"udp portrange {lo}-{hi}", "-B", "64",
                                "-w", str(pcap)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            room = "photon-trace"
            # The room as the server makes it (what --playout-delay compares); --env
            # RUNNER_LIVEKIT__ZERO_PLAYOUT_DELAY=true traces the runner's own room setting.
            extra = {"RUNNER_LIVEKIT__ZERO_PLAYOUT_DELAY": "false", **dict(kv.split("=", 1) for kv in args.env)}
            env = runner_env(args.fps, BITRATES[(1920, 1080)], RUNNER_LOG__LEVEL="info",
                             BENCH_HANDOFF_LOG=str(handoff_log), **extra)
            runner = Runner(livekit_url=lk.url, api_key=lk.api_key, api_secret=lk.api_secret, room=room,
                            passphrase=PASSPHRASE, display=x.display, extra_env=env,
                            script=[str(ROOT / "bench" / "probe_handoff.py")])
            with runner:
                runner.wait_for_event("track_published", timeout=30)
                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(executable_path=CHROMIUM_PATH, headless=True,
                                                       args=CHROMIUM_ARGS)
                    page = await browser.new_page(viewport={"width": 1280, "height": 800})
                    token = mint_token(lk.api_key, lk.api_secret, room, "photon-trace-viewer")
                    await page.goto(viewer_link(vs.url, lk.url, token, PASSPHRASE))
                    await page.wait_for_function("() => window.viewer !== undefined", timeout=10_000)
                    await wait_for_viewer(page, lambda s: s.get("videoWidth", 0) > 2
                                          and (s.get("control") or {}).get("you") is True,
                                          timeout=30, what="the viewer showing video with control")
                    monitors = await page.evaluate("() => window.viewer.call('dr.monitors.list')")
                    mon = monitors["monitors"][0]["id"]
                    await asyncio.sleep(3)  # past the join's keyframes and their echo
                    result = await page.evaluate(TRACE_JS, [args.trials, args.gap[0], args.gap[1], mon,
                                                            args.jitter_buffer_target])
                    await browser.close()
                shutil.copy(runner.log_path, out / "runner.log")
        finally:
            time.sleep(0.5)
            cap.terminate()
            cap.wait()
    (out / "browser.json").write_text(json.dumps(result))
    (out / "ports.json").write_text(json.dumps([lo, hi]))
    report(out, args.detail)


def report(out: Path, over_ms: float | None) -> None:
    result = json.loads((out / "browser.json").read_text())
    lo, hi = json.loads((out / "ports.json").read_text())
    pcap = out / "capture.pcapng"
    handoffs = [json.loads(line) for line in (out / "handoff.jsonl").read_text().splitlines()]
    up, down = read_capture(pcap, (lo, hi))
    rows = analyse(handoffs, up, down, result)
    (out / "trials.json").write_text(json.dumps(rows, indent=1))
    summary(rows)
    if over_ms is not None:
        detail(rows, all_packets(pcap), handoffs, result, over_ms)
    before, after = result.get("before") or {}, result.get("after") or {}
    for k in ("nackCount", "pliCount", "firCount", "framesDropped", "packetsLost", "retransmittedPacketsReceived",
              "jitterBufferDelay", "jitterBufferEmittedCount", "jitterBufferTargetDelay", "framesDecoded"):
        if k in after:
            print(f"  {k}: {round(after[k] - before.get(k, 0), 3)}", end="")
    print(f"\n  jitterBufferTarget: {result.get('jitterBufferTarget')}; padding packets downlink "
          f"{len(down.padding)}, uplink {len(up.padding)}; rtx packets downlink {len(down.rtx)}, uplink {len(up.rtx)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--gap", type=int, nargs=2, default=[2000, 2200], metavar=("MIN_MS", "MAX_MS"))
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--jitter-buffer-target", type=float, default=None, help="ms; set on the screen track")
    parser.add_argument("--playout-delay", type=int, nargs=2, metavar=("MIN_MS", "MAX_MS"),
                        help="livekit-server's room.playout_delay (the RTP playout-delay extension)")
    parser.add_argument("--env", action="append", default=[], help="RUNNER_X=value for the runner")
    parser.add_argument("--out", type=Path, help="keep the capture, logs and per-trial JSON here")
    parser.add_argument("--detail", type=float, metavar="MS", help="list the packets of trials slower than MS")
    parser.add_argument("--report", type=Path, metavar="DIR", help="only analyse a kept --out directory")
    args = parser.parse_args()
    for tool in ("tshark", "dumpcap"):
        if shutil.which(tool) is None:
            raise SystemExit(f"photon_trace: {tool} not found; install Debian's tshark package")
    if args.report:
        report(args.report, args.detail)
        return
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        asyncio.run(trace(args, args.out))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(trace(args, Path(tmp)))
    print(f"load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
