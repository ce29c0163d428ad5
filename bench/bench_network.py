"""The screen over slow, delayed, lossy paths: bitrate, legibility after a change, input-to-photon.

Each path is built by tests/netpath.py: the runner and Chromium each in a network namespace this
benchmark creates, behind its own veth pair with tbf at the given rate on both ends (100 ms of
queue), livekit-server on the host between them, and a UDP relay per leg adding the given one-way
delay and loss (seeded) end to end, split over both legs (runner -> server, server -> browser).
Xvfb 1920x1080 shows bench/netscene.py; the runner runs with its defaults
(30 fps, skip_unchanged, start bitrate 4 Mbit/s); headless Chromium runs the reference viewer with
control. Per path:
- busy: the terminal scrolls 30 lines/s for BUSY_S: the runner's sent bitrate and LiveKit's
  target (its status line, per second), what the browser received (inbound-rtp bytes);
- changes: TRIALS pointer moves through the viewer, each changing the square and the text page:
  input-to-photon (move sent until the square shows in a decoded frame) and the time until the
  text page's luma reaches 36 dB PSNR against the X screen (in the browser, every decoded frame);
- over both: freezes as Chromium counts them (inbound-rtp freezeCount, totalFreezesDuration),
  keyframes sent and asked for, the relay's and tbf's counters.
Then one step run: the link drops from 5 to 1 Mbit/s and back while busy; LiveKit's target and the
sent bitrate per second show whether the encoder follows.

Usage: .venv/bin/python bench/bench_network.py [--quick] [--json bench/network.json]
Needs root (network namespaces).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "tests"), str(ROOT / "bench")]

import numpy as np  # noqa: E402
from netscene import PAGE, PAGES, SQUARE  # noqa: E402

from devstack import Runner, Xvfb, mint_token, viewer_link  # noqa: E402
from netpath import ImpairedPath, LegRunner, LegViewerServer, Link, chromium_in  # noqa: E402
from screen_quality import LEGIBLE_DB, psnr, rgb_luma  # noqa: E402

PASSPHRASE = "network benchmark passphrase"
WIDTH, HEIGHT = 1920, 1080
BUSY_S = 10
DUMP_DIR: Path | None = None
TRACE_DIR: Path | None = None  # --trace: the relays' packet headers while busy, per link
FREEZE_MS = 250  # a gap this long without a new frame while the terminal scrolls is a freeze
TRIALS = 8
TRIAL_TIMEOUT_MS = 6_000  # a page not legible by then counts as "never" (the target is 2 s)
GAP_S = (1.5, 2.5)  # between trials: the picture settles
# Each rate at 40 ms and 1 %, and the target rate from 20 ms, 0 % to 80 ms, 2 %.
FULL_LINKS = [Link(rate, 40, 0.01, seed=15) for rate in (1_000_000, 2_000_000, 5_000_000)] + [
    Link(2_000_000, 20, 0.0, seed=15), Link(2_000_000, 80, 0.02, seed=15)]
QUICK_LINKS = [Link(2_000_000, 40, 0.01, seed=15)]
TARGET_LINK = Link(2_000_000, 40, 0.01, seed=15)  # issue 15: legible within 2 s, photon p95 < 250 ms

TRIAL_COUNTERS = ("packetsLost", "nackCount", "pliCount", "keyFramesDecoded", "framesDropped", "keyframeAsks")

TRIAL_JS = """
async ([fx, fy, mon, refB64, region, square, wantWhite, timeoutMs, legibleDb]) => {
  const video = document.getElementById('screen');
  const [rx, ry, rw, rh] = region;
  const ref = Uint8Array.from(atob(refB64), (c) => c.charCodeAt(0));
  const canvas = new OffscreenCanvas(rw, rh);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const sq = new OffscreenCanvas(4, 4).getContext('2d', { willReadFrequently: true });
  const psnr = () => {
    ctx.drawImage(video, rx, ry, rw, rh, 0, 0, rw, rh);
    const d = ctx.getImageData(0, 0, rw, rh).data;
    let se = 0;
    for (let i = 0, p = 0; i < ref.length; i++, p += 4) {
      const diff = 0.299 * d[p] + 0.587 * d[p + 1] + 0.114 * d[p + 2] - ref[i];
      se += diff * diff;
    }
    const mse = se / ref.length;
    return mse === 0 ? 99 : Math.min(99, 10 * Math.log10(255 * 255 / mse));
  };
  const white = () => {
    sq.drawImage(video, square[0] - 2, square[1] - 2, 4, 4, 0, 0, 4, 4);
    const d = sq.getImageData(0, 0, 4, 4).data;
    let sum = 0;
    for (let i = 0; i < d.length; i += 4) sum += d[i] + d[i + 1] + d[i + 2];
    return sum / 48 > 128;
  };
  const t0 = performance.now();
  await window.viewer.sendInput({ t: 'move', mon, x: fx, y: fy });
  return await new Promise((resolve) => {
    let photon = null, photonRx = null, text = null, last = null, frames = 0;
    const check = (_, meta) => {
      frames++;
      const now = performance.now();
      if (photon === null && white() === wantWhite) {
        photon = now - t0;
        // when the frame's last packet arrived (rVFC metadata): the rest is decode and display
        photonRx = meta && meta.receiveTime ? meta.receiveTime - t0 : null;
      }
      if (text === null) {
        last = psnr();
        if (last >= legibleDb) text = now - t0;
      }
      if ((photon !== null && text !== null) || now - t0 > timeoutMs) {
        resolve({ photon, photonRx, text, last, frames, at: t0 });
        return;
      }
      video.requestVideoFrameCallback(check);
    };
    video.requestVideoFrameCallback(check);
  });
}
"""

REGION_JS = """
([rx, ry, rw, rh]) => {
  const video = document.getElementById('screen');
  const ctx = new OffscreenCanvas(rw, rh).getContext('2d', { willReadFrequently: true });
  ctx.drawImage(video, rx, ry, rw, rh, 0, 0, rw, rh);
  const d = ctx.getImageData(0, 0, rw, rh).data;
  let s = '';
  for (let i = 0; i < d.length; i += 8192) s += String.fromCharCode(...d.subarray(i, i + 8192));
  return btoa(s);
}
"""

FRAME_GAPS_JS = """
async ([seconds, sampleMs]) => {
  const video = document.getElementById('screen');
  const times = [];
  const samples = [];
  let sampling = true;
  const poll = async () => {
    while (sampling) {
      const s = await (RECEIVER_JS)();
      if (s) samples.push(s);
      await new Promise((r) => setTimeout(r, sampleMs));
    }
  };
  const polling = poll();
  await new Promise((resolve) => {
    const end = performance.now() + seconds * 1000;
    const tick = (now) => {
      times.push(now);
      if (now > end) return resolve();
      video.requestVideoFrameCallback(tick);
    };
    video.requestVideoFrameCallback(tick);
  });
  sampling = false;
  await polling;
  const gaps = times.slice(1).map((t, i) => t - times[i]);
  return { frames: times.length, gaps, times, samples };
}
"""

RECEIVER_JS = """
async () => {
  const room = window.viewer.room;
  if (!room) return null;
  for (const p of room.remoteParticipants.values()) {
    for (const pub of p.trackPublications.values()) {
      const t = pub.track;
      if (!t || t.kind !== 'video' || !t.receiver) continue;
      const stats = await t.receiver.getStats();
      for (const s of stats.values()) {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          return { bytesReceived: s.bytesReceived, framesDecoded: s.framesDecoded,
                   freezeCount: s.freezeCount ?? 0, totalFreezesDuration: s.totalFreezesDuration ?? 0,
                   packetsLost: s.packetsLost, nackCount: s.nackCount, pliCount: s.pliCount,
                   packetsReceived: s.packetsReceived, framesReceived: s.framesReceived,
                   keyFramesDecoded: s.keyFramesDecoded, framesDropped: s.framesDropped,
                   keyframeAsks: window.viewer.state.keyframeAsks ?? 0, at: performance.now() };
        }
      }
    }
  }
  return null;
}
"""


FRAME_GAPS_JS = FRAME_GAPS_JS.replace("(RECEIVER_JS)", "(" + RECEIVER_JS.strip() + ")")
SAMPLE_MS = 50  # inbound-rtp while the terminal scrolls, for the freezes' anatomy
# What moved during a freeze, from SAMPLE_MS samples of the browser's inbound-rtp.
FREEZE_COUNTERS = ("packetsReceived", "framesReceived", "packetsLost", "nackCount", "pliCount",
                   "keyframeAsks", "keyFramesDecoded")


def freeze_anatomy(times: list[float], samples: list[dict[str, Any]], freeze_ms: float) -> list[dict[str, Any]]:
    """Per gap over ``freeze_ms`` between shown frames (performance.now() ms): its length and, per
    counter, how much it moved from the last sample before the gap to the first after it, and when
    it first moved (ms after the last frame before the gap; None if it did not)."""
    out = []
    for start, end in itertools.pairwise(times):
        if end - start <= freeze_ms:
            continue
        before = [s for s in samples if s["at"] <= start]
        inside = [s for s in samples if start < s["at"] <= end + SAMPLE_MS]
        if not before or not inside:
            continue
        base = before[-1]
        detail: dict[str, Any] = {"gap_ms": round(end - start), "sampled_ms": round(inside[-1]["at"] - start)}
        for key in FREEZE_COUNTERS:
            moved = [s for s in inside if s[key] != base[key]]
            detail[key] = {"delta": inside[-1][key] - base[key],
                           "first_ms": round(moved[0]["at"] - start) if moved else None}
        out.append(detail)
    return out


def pct(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def box(frac: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    fx, fy, fw, fh = frac
    return int(fx * WIDTH), int(fy * HEIGHT), int(fw * WIDTH), int(fh * HEIGHT)


# The text page without its window's edges (the encoder's block edges fall elsewhere there).
PAGE_REGION = (lambda x, y, w, h: (x + 4, y + 4, (w - 8) & ~7, (h - 8) & ~7))(*box(PAGE))
SQUARE_CENTRE = (lambda x, y, w, h: (x + w // 2, y + h // 2))(*box(SQUARE))


def page_y(index: int) -> float:
    """A normalized pointer height inside page band ``index``."""
    return (index + 0.5) / PAGES


class Scene:
    """bench/netscene.py on a display; ``busy(True)`` starts the terminal scrolling."""

    def __init__(self, display: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "netscene.py"), "--display", display],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"netscene did not start on {display} (exit {self.proc.poll()})")

    def busy(self, on: bool) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"busy {int(on)}\n")
        self.proc.stdin.flush()
        self.proc.stdout.readline()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@contextmanager
def scene(display: str) -> Iterator[Scene]:
    s = Scene(display)
    try:
        yield s
    finally:
        s.stop()


def page_references(display: str) -> list[str]:
    """Each page's luma (uint8, base64) as the X server shows it: the pointer is warped into
    each band locally (no viewer involved) and the page region read back."""
    from Xlib import X
    from Xlib import display as xdisplay

    d = xdisplay.Display(display)
    root = d.screen().root
    rx, ry, rw, rh = PAGE_REGION
    refs = []
    previous = None
    for index in range(PAGES):
        root.warp_pointer(WIDTH // 4, int(page_y(index) * HEIGHT))
        d.sync()
        for _ in range(100):  # until the scene has drawn the page
            time.sleep(0.02)
            raw = root.get_image(rx, ry, rw, rh, X.ZPixmap, 0xFFFFFFFF).data
            bgra = np.frombuffer(raw, np.uint8).reshape(rh, rw, 4)
            y = np.round(rgb_luma(bgra[..., [2, 1, 0]])).astype(np.uint8)
            if previous is None or not np.array_equal(y, previous):
                break
        previous = y
        refs.append(base64.b64encode(y.tobytes()).decode())
    d.close()
    return refs


def statuses(runner: Runner) -> list[dict[str, Any]]:
    """The runner's status lines so far (one a second)."""
    return [e for e in runner.events() if e.get("event") == "status"]


@asynccontextmanager
async def viewer(path: ImpairedPath, room: str) -> AsyncIterator[Any]:
    """The reference viewer in headless Chromium inside the browser's namespace, joined, with
    control, showing the full-size picture."""
    from playwright.async_api import async_playwright

    from realenv import CHROMIUM_ARGS, wait_for_viewer

    lk = path.server
    with LegViewerServer(path.browser_leg) as vs, chromium_in(path.browser_leg) as chromium:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                token = mint_token(lk.api_key, lk.api_secret, room, "bench-net-viewer")
                await page.goto(viewer_link(vs.url, lk.url_from(path.browser_leg), token, PASSPHRASE))
                await page.wait_for_function("() => window.viewer !== undefined", timeout=10_000)
                await wait_for_viewer(page, lambda s: s.get("videoWidth", 0) == WIDTH
                                      and (s.get("control") or {}).get("you") is True,
                                      timeout=90, what="the viewer showing video with control")
                yield page
            finally:
                await browser.close()


def runner_for(path: ImpairedPath, room: str, display: str) -> Runner:
    return LegRunner(path.runner_leg, path.server, room=room, passphrase=PASSPHRASE, display=display,
                     extra_env={"RUNNER_LOG__STATUS_INTERVAL_S": "1", "RUNNER_LOG__FORMAT": "json"})


async def run_link(link: Link, trials: int, busy_s: float) -> dict[str, Any]:
    rng = random.Random(link.seed)
    with Xvfb(WIDTH, HEIGHT) as x, scene(x.display) as sc, ImpairedPath(link) as path:
        refs = page_references(x.display)
        room = f"bench-net-{secrets_suffix()}"
        runner = runner_for(path, room, x.display)
        with runner:
            runner.wait_for_event("track_published", timeout=60)
            async with viewer(path, room) as page:
                monitors = await page.evaluate("() => window.viewer.call('dr.monitors.list')")
                mon = monitors["monitors"][0]["id"]
                await asyncio.sleep(3)
                rx0 = await page.evaluate(RECEIVER_JS)
                # busy
                sc.busy(True)
                await asyncio.sleep(3)
                busy_from, rx_busy0 = len(statuses(runner)), await page.evaluate(RECEIVER_JS)
                if TRACE_DIR is not None:  # from here to the last trial
                    for relay in path.relays.values():
                        relay.trace(True)
                    # The clocks side by side (one round trip to the page apart): the relays'
                    # (monotonic), the page's and the runner's log's (wall).
                    clocks = [time.monotonic(), await page.evaluate("performance.now()"), time.monotonic(),
                              time.time()]
                frame_gaps = await page.evaluate(FRAME_GAPS_JS, [busy_s, SAMPLE_MS])
                rx_busy1 = await page.evaluate(RECEIVER_JS)
                busy_lines = statuses(runner)[busy_from:]
                sc.busy(False)
                await asyncio.sleep(2)
                # changes
                white = False  # page_references left the pointer on the left half, in the last band
                current = PAGES - 1
                results = []
                for _ in range(trials):
                    await asyncio.sleep(rng.uniform(*GAP_S))
                    target = rng.choice([p for p in range(PAGES) if p != current])
                    want_white = not white
                    fx = 0.75 if want_white else 0.25
                    before = await page.evaluate(RECEIVER_JS)
                    r = await page.evaluate(TRIAL_JS, [fx, page_y(target), mon, refs[target], list(PAGE_REGION),
                                                       list(SQUARE_CENTRE), want_white, TRIAL_TIMEOUT_MS, LEGIBLE_DB])
                    after = await page.evaluate(RECEIVER_JS)
                    # What the browser saw during the trial: losses, NACKs, keyframes, asks.
                    r["receiver"] = {k: after[k] - before[k] for k in TRIAL_COUNTERS} if before and after else None
                    # Cross-check the browser's figure with the shared Python PSNR on the last frame.
                    shown = np.frombuffer(base64.b64decode(await page.evaluate(REGION_JS, list(PAGE_REGION))),
                                          np.uint8).reshape(PAGE_REGION[3], PAGE_REGION[2], 4)
                    ref = np.frombuffer(base64.b64decode(refs[target]), np.uint8).reshape(PAGE_REGION[3],
                                                                                           PAGE_REGION[2])
                    r["psnr_after"] = round(psnr(ref, np.round(rgb_luma(shown))), 2)
                    if DUMP_DIR is not None:  # what was compared, for a look (--dump)
                        n = len(results)
                        np.save(DUMP_DIR / f"trial{n}-shown.npy", shown)
                        np.save(DUMP_DIR / f"trial{n}-ref.npy", ref)
                    results.append(r)
                    white, current = want_white, target
                rx1 = await page.evaluate(RECEIVER_JS)
                if TRACE_DIR is not None:
                    traces = {name: relay.trace(False) for name, relay in path.relays.items()}
                    name = f"trace-{(link.rate_bps or 0) / 1e6:g}M-{link.delay_ms:g}ms-{link.loss * 100:g}pct.json"
                    (TRACE_DIR / name).write_text(json.dumps(
                        {"clocks": clocks, "frame_gaps": frame_gaps, "relays": traces,
                         "runner_events": [e for e in runner.events() if e.get("event") == "nack_unanswered"]}))
            all_lines = statuses(runner)
            counters = path.counters()
    photon = [r["photon"] for r in results if r["photon"] is not None]
    text = [r["text"] / 1000 for r in results if r["text"] is not None]
    busy_sent = [e["bitrate"] for e in busy_lines]
    busy_target = [e["bitrate_target"] for e in busy_lines]
    received_bps = (8 * (rx_busy1["bytesReceived"] - rx_busy0["bytesReceived"])
                    / ((rx_busy1["at"] - rx_busy0["at"]) / 1000)) if rx_busy0 and rx_busy1 else None
    row = {
        "link": {"rate_bps": link.rate_bps, "delay_ms": link.delay_ms, "loss": link.loss, "queue_ms": link.queue_ms},
        "busy_sent_bps": round(statistics.mean(busy_sent)) if busy_sent else None,
        "busy_target_bps": round(statistics.mean(busy_target)) if busy_target else None,
        "busy_received_bps": round(received_bps) if received_bps is not None else None,
        "trials": len(results),
        "photon_p50_ms": _r(pct(photon, 0.5)), "photon_p95_ms": _r(pct(photon, 0.95)),
        "photon_missed": len(results) - len(photon),
        "legible_p50_s": _r(pct(text, 0.5), 2), "legible_max_s": _r(max(text) if text else None, 2),
        "legible_missed": len(results) - len(text),
        "psnr_after_min": min(r["psnr_after"] for r in results) if results else None,
        "busy_frames": frame_gaps["frames"],
        "freezes": sum(g > FREEZE_MS for g in frame_gaps["gaps"]),
        "freeze_s": round(sum(g for g in frame_gaps["gaps"] if g > FREEZE_MS) / 1000, 2),
        "longest_gap_ms": round(max(frame_gaps["gaps"], default=0)),
        "freeze_anatomy": freeze_anatomy(frame_gaps["times"], frame_gaps["samples"], FREEZE_MS),
        "keyframes": sum(e.get("keyframes", 0) for e in all_lines),
        "keyframe_requests": sum(e.get("keyframe_requests", 0) for e in all_lines),
        "receiver": {"start": rx0, "end": rx1},
        "counters": counters,
        "trial_results": results,
    }
    return row


def secrets_suffix() -> str:
    import secrets

    return secrets.token_hex(3)


def _r(value: float | None, digits: int = 1) -> float | None:
    return round(value, digits) if value is not None else None


async def run_step(high: int, low: int, phases: tuple[float, float, float]) -> dict[str, Any]:
    """Busy screen; the link at ``high``, then ``low``, then ``high`` again: the target per second."""
    link = Link(high, 20, 0.0, seed=15)
    with Xvfb(WIDTH, HEIGHT) as x, scene(x.display) as sc, ImpairedPath(link) as path:
        room = f"bench-net-step-{secrets_suffix()}"
        runner = runner_for(path, room, x.display)
        with runner:
            runner.wait_for_event("track_published", timeout=60)
            async with viewer(path, room):
                sc.busy(True)
                started, first = time.time(), len(statuses(runner))
                marks = []
                for rate, seconds in zip((high, low, high), phases, strict=True):
                    path.set_rate(rate)
                    marks.append((round(time.time() - started, 1), rate))
                    await asyncio.sleep(seconds)
                lines = statuses(runner)[first:]
    series = [[e["bitrate_target"], e["bitrate"]] for e in lines]
    t_low, t_back = phases[0], phases[0] + phases[1]
    # Seconds (status lines are 1 s apart) until the target went under the low rate, and back up.
    down = next((i - t_low for i, (tgt, _) in enumerate(series) if i >= t_low and tgt <= low), None)
    up = next((i - t_back for i, (tgt, _) in enumerate(series) if i >= t_back and tgt >= 0.6 * high), None)
    return {"high_bps": high, "low_bps": low, "phases_s": list(phases), "marks": marks,
            "series_target_sent": series, "down_s": down, "up_s": up}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    links = QUICK_LINKS if args.quick else FULL_LINKS
    if args.link:
        rate, delay, loss = (float(v) for v in args.link.split(","))
        links = [Link(int(rate * 1e6) if rate else None, delay, loss / 100, seed=15)]
    trials = 6 if args.quick else TRIALS
    out: dict[str, Any] = {"load_before": Path("/proc/loadavg").read_text().split()[:3], "links": []}
    for link in links:
        row = await run_link(link, trials, BUSY_S if not args.quick else 8)
        out["links"].append(row)
        print_row(row)
    if not args.no_step:
        step = await run_step(5_000_000, 1_000_000, (12, 12, 15) if args.quick else (20, 20, 30))
        out["step"] = step
        print(f"  step 5 -> 1 -> 5 Mbit/s: target under 1 Mbit/s after {step['down_s']} s, "
              f"back over 3 Mbit/s after {step['up_s']} s; target/sent kbit/s per second: "
              + " ".join(f"{t // 1000}/{s // 1000}" for t, s in step["series_target_sent"]), flush=True)
    out["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
    return out


def print_row(row: dict[str, Any]) -> None:
    link = row["link"]
    print(f"  {(link['rate_bps'] or 0) / 1e6:g} Mbit/s {link['delay_ms']:g} ms {link['loss'] * 100:g} %: "
          f"busy sent {kbit(row['busy_sent_bps'])} (target {kbit(row['busy_target_bps'])}), "
          f"received {kbit(row['busy_received_bps'])}; "
          f"legible p50 {row['legible_p50_s']} s max {row['legible_max_s']} s "
          f"({row['legible_missed']} never); photon p50 {row['photon_p50_ms']} p95 {row['photon_p95_ms']} ms "
          f"({row['photon_missed']} missed); freezes {row['freezes']} ({row['freeze_s']} s, longest gap "
          f"{row['longest_gap_ms']} ms); "
          f"keyframes {row['keyframes']} for {row['keyframe_requests']} requests", flush=True)


def kbit(bps: float | None) -> str:
    return f"{bps / 1000:.0f} kbit/s" if bps is not None else "-"


def markdown(results: dict[str, Any]) -> str:
    lines = ["| link (each way) | sent while busy (LiveKit target) | received "
             "| text >= 36 dB after a change: p50 / max | input-to-photon p50 / p95 "
             "| freezes while busy (total, longest gap) | keyframes / requests |",
             "|---|---|---|---|---|---|---|"]
    for r in results["links"]:
        link = r["link"]
        never = f", {r['legible_missed']} never" if r["legible_missed"] else ""
        lines.append(f"| {(link['rate_bps'] or 0) / 1e6:g} Mbit/s, {link['delay_ms']:g} ms, {link['loss'] * 100:g} % "
                     f"| {kbit(r['busy_sent_bps'])} ({kbit(r['busy_target_bps'])}) | {kbit(r['busy_received_bps'])} "
                     f"| {r['legible_p50_s']} / {r['legible_max_s']} s{never} "
                     f"| {r['photon_p50_ms']} / {r['photon_p95_ms']} ms "
                     f"| {r['freezes']} ({r['freeze_s']} s, {r['longest_gap_ms']} ms) "
                     f"| {r['keyframes']} / {r['keyframe_requests']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one link (2 Mbit/s, 40 ms, 1 %%), short phases")
    parser.add_argument("--no-step", action="store_true", help="skip the 5 -> 1 -> 5 Mbit/s step run")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "network.json")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    parser.add_argument("--link", help="one link instead: MBIT_S,DELAY_MS,LOSS_PERCENT (rate 0: unlimited)")
    parser.add_argument("--dump", type=Path, help="save each trial's compared pictures (.npy) here")
    parser.add_argument("--trace", type=Path, help="save the relays' RTP/RTCP headers while busy here "
                        "(trace-LINK.json; analysed by bench/trace_repairs.py)")
    args = parser.parse_args()
    global DUMP_DIR, TRACE_DIR
    DUMP_DIR, TRACE_DIR = args.dump, args.trace
    # Stopped from outside: leave through the context managers, which delete the namespaces and
    # stop the servers (a plain SIGTERM would leave them behind).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = asyncio.run(main_async(args))
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results)
    print("\n" + table)
    if args.markdown:
        args.markdown.write_text(table)
    print(f"results written to {args.json} (load {results['load_before']} -> {results['load_after']})")


if __name__ == "__main__":
    main()
