"""An impaired network path between the runner and the browser, for tests and the benchmark.

This kernel has no netem, so the path is built from parts that do work here (README, "Behaviour
on real links"). livekit-server runs on the host, as an SFU in the middle; the runner and the
browser each sit in a network namespace of their own, made by this process (and always deleted
again), each behind one leg:

    runner [ns R] --veth R, tbf both ways-- host: livekit-server --veth B, tbf both ways-- [ns B] browser

- ``Leg``: a network namespace and a veth pair to the host, addressed from a private /30 that
  exists only inside this machine, with a ``tbf`` rate limit (a bounded queue) on both ends, so
  each direction of each leg has its own bottleneck, as a real access link does: the runner's
  video going up does not queue behind the browser's input, nor its feedback behind the video
  going down to the browser.
- livekit-server announces 127.0.0.1:<its UDP port> as its only ICE candidate (``node_ip``).
  Inside each namespace that address is the namespace's own loopback, where
- ``UdpRelay`` (a separate process, asyncio, run inside the namespace) listens and forwards each
  client socket's packets from a socket of its own to the server across the veth, adding delay
  and loss (a seeded generator per direction) both ways, and counting what it forwards and drops.
  ICE/TCP is off, so there is no way around the relay.

``Link`` describes the path end to end (runner to browser); each leg gets half the delay and the
loss that makes both legs together lose ``loss``, and the full rate. Counters
(``ImpairedPath.counters``) prove that the media went through the impairment.

Needs root (``ip netns``, ``ip link``, ``tc``). The relay runs as ``python tests/netpath.py relay ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import os
import random
import secrets
import select
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))

from devstack import (  # noqa: E402
    LOOPBACK,
    ComponentError,
    LiveKitServer,
    Runner,
    ViewerServer,
    _udp_port_is_free,
    _wait_until,
)

T = TypeVar("T")

# Private /30s for the veth pair are picked in here, avoiding any network the host already routes.
SUBNET_POOL = ipaddress.ip_network("10.213.0.0/16")
# tbf's queue bound: a packet that would wait longer than this in the queue is dropped, as a
# bottleneck router with a modest buffer does.
DEFAULT_QUEUE_MS = 100
RELAY_START_TIMEOUT_S = 10.0
# The relays run as this user, so the namespace's firewall can tell their packets from the
# clients' (``Leg.only_relay_reaches``).
RELAY_UID = 65534  # nobody


@dataclass(frozen=True)
class Link:
    """An impaired path between the runner and the browser, end to end.

    ``rate_bps``: the bottleneck in each direction (None: no limit). ``delay_ms``: added one-way
    delay, runner -> browser and browser -> runner alike (the round trip gains twice this).
    ``loss``: fraction of packets lost one way, end to end. ``queue_ms``: the bottleneck's buffer.
    """

    rate_bps: int | None
    delay_ms: float = 0.0
    loss: float = 0.0
    queue_ms: int = DEFAULT_QUEUE_MS
    seed: int = 1

    @property
    def leg_delay_s(self) -> float:
        """Delay the relay adds per direction on each of the two legs (runner-server, server-browser)."""
        return self.delay_ms / 2 / 1000

    @property
    def leg_loss(self) -> float:
        """Loss per direction per leg, so that both legs together lose ``loss``."""
        return 1 - math.sqrt(1 - self.loss)

    def label(self) -> str:
        rate = f"{self.rate_bps / 1e6:g} Mbit/s" if self.rate_bps else "unlimited"
        return f"{rate}, {self.delay_ms:g} ms, {self.loss * 100:g} % loss"


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    if check and result.returncode != 0:
        raise ComponentError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _routed_networks() -> list[ipaddress.IPv4Network]:
    out = _run(["ip", "-4", "-o", "route", "show", "table", "all"], check=False).stdout
    nets = []
    for line in out.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in {"broadcast", "local", "unicast"} and len(line.split()) > 1:
            word = line.split()[1]
        try:
            nets.append(ipaddress.ip_network(word if word != "default" else "0.0.0.0/32", strict=False))
        except ValueError:
            continue
    return [n for n in nets if isinstance(n, ipaddress.IPv4Network)]


def _free_subnet() -> ipaddress.IPv4Network:
    taken = _routed_networks()
    for _ in range(100):
        candidate = ipaddress.ip_network(
            f"{SUBNET_POOL.network_address + 4 * random.randrange(SUBNET_POOL.num_addresses // 4)}/30")
        if not any(candidate.overlaps(t) for t in taken if t.prefixlen > 0):
            assert isinstance(candidate, ipaddress.IPv4Network)
            return candidate
    raise ComponentError(f"no free /30 in {SUBNET_POOL} for the test's veth pair")


def _tbf_args(rate_bps: int, queue_ms: int) -> list[str]:
    # burst: at least one MTU-sized packet, and about 4 ms at the rate (tbf needs rate/HZ).
    burst = max(3000, rate_bps // 8 // 250)
    return ["tbf", "rate", f"{rate_bps}bit", "burst", str(burst), "latency", f"{queue_ms}ms"]


class Leg:
    """A network namespace with a veth pair to the host, made by this process; ``close()`` (also on
    ``with`` exit) deletes both. ``host_ip`` is the host end, ``ns_ip`` the namespace end."""

    def __init__(self, role: str) -> None:
        tag = secrets.token_hex(3)
        self.name = f"drnet-{role}-{tag}"
        self.host_dev, self.ns_dev = f"drn{role}{tag}h", f"drn{role}{tag}n"
        subnet = _free_subnet()
        hosts = list(subnet.hosts())
        self.host_ip, self.ns_ip = str(hosts[0]), str(hosts[1])
        self._created_ns = self._created_link = False
        try:
            _run(["ip", "netns", "add", self.name])
            self._created_ns = True
            _run(["ip", "link", "add", self.host_dev, "type", "veth", "peer", "name", self.ns_dev])
            self._created_link = True
            _run(["ip", "link", "set", self.ns_dev, "netns", self.name])
            _run(["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_dev])
            _run(["ip", "link", "set", self.host_dev, "up"])
            _run(["ip", "-n", self.name, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_dev])
            _run(["ip", "-n", self.name, "link", "set", self.ns_dev, "up"])
            _run(["ip", "-n", self.name, "link", "set", "lo", "up"])
            # Chromium gathers ICE candidates only with a default route (it asks which local address
            # would reach a public one); through the host end, where nothing forwards it further.
            _run(["ip", "-n", self.name, "route", "add", "default", "via", self.host_ip])
        except BaseException:
            self.close()
            raise

    def shape(self, rate_bps: int | None, queue_ms: int = DEFAULT_QUEUE_MS) -> None:
        """Limit both directions to ``rate_bps`` (None: remove the limit); can change while running."""
        for side in ("host", "ns"):
            dev = self.host_dev if side == "host" else self.ns_dev
            prefix = [] if side == "host" else ["ip", "netns", "exec", self.name]
            _run([*prefix, "tc", "qdisc", "del", "dev", dev, "root"], check=False)
            if rate_bps is not None:
                _run([*prefix, "tc", "qdisc", "add", "dev", dev, "root", *_tbf_args(rate_bps, queue_ms)])

    def tbf_stats(self) -> dict[str, dict[str, int]]:
        """Per direction (``to_ns``: host -> namespace, ``from_ns``) the root qdisc's counters:
        bytes and packets sent, packets dropped, overlimits (packets that had to wait)."""
        out: dict[str, dict[str, int]] = {}
        for key, dev, prefix in (("to_ns", self.host_dev, []),
                                 ("from_ns", self.ns_dev, ["ip", "netns", "exec", self.name])):
            data = json.loads(_run([*prefix, "tc", "-s", "-j", "qdisc", "show", "dev", dev]).stdout or "[]")
            root = next((q for q in data if q.get("root")), {})
            out[key] = {"kind": root.get("kind", ""), "bytes": int(root.get("bytes", 0)),
                        "packets": int(root.get("packets", 0)), "drops": int(root.get("drops", 0)),
                        "overlimits": int(root.get("overlimits", 0))}  # type: ignore[dict-item]
        return out

    def only_relay_reaches(self, port: int) -> None:
        """Drop UDP to ``port`` off the namespace (at any address: the server listens on every
        leg's host end) from anyone in the namespace but the relay.

        Without it the clients find a direct path: the server's connectivity checks come from
        host_ip:port straight to the client's own address, and ICE takes that pair (measured:
        the runner's video crossed the veth with 1 % of it through the relay)."""
        _run(["ip", "netns", "exec", self.name, "iptables", "-A", "OUTPUT", "-p", "udp", "!", "-d", "127.0.0.0/8",
              "--dport", str(port),
              "-m", "owner", "!", "--uid-owner", str(RELAY_UID), "-j", "DROP"])

    def exec_argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the namespace (``ip netns exec`` execs it: same process)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def close(self) -> None:
        """Delete the veth pair and the namespace; safe to call twice. Processes still inside the
        namespace are ours (only our own processes are ever started in it) and are killed first."""
        if self._created_ns:
            pids = _run(["ip", "netns", "pids", self.name], check=False).stdout.split()
            for pid in pids:
                _run(["kill", "-9", pid], check=False)
        if self._created_link:
            _run(["ip", "link", "del", self.host_dev], check=False)
            self._created_link = False
        if self._created_ns:
            _run(["ip", "netns", "del", self.name], check=False)
            self._created_ns = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _free_udp_port() -> int:
    for _ in range(200):
        port = random.randrange(20_000, 60_000)
        if _udp_port_is_free(port):
            return port
    raise ComponentError("no free UDP port for the relay")


class ImpairedLiveKit(LiveKitServer):
    """livekit-server --dev on the host, listening on loopback and on the host end of each leg;
    its single ICE/UDP port is announced as 127.0.0.1:``udp_port`` (inside each namespace, where
    that leg's relay listens) and ICE/TCP is off, so clients have no way around the relays."""

    def __init__(self, legs: list[Leg], **kwargs: Any) -> None:
        self.legs = legs
        self.udp_port = _free_udp_port()
        super().__init__(**kwargs)

    @property
    def media_address(self) -> tuple[str, int]:
        """Where the relays send: the first leg's host end (every namespace reaches it through its
        own veth, as the host owns the address)."""
        return self.legs[0].host_ip, self.udp_port

    def url_from(self, leg: Leg) -> str:
        """The signalling URL for a client inside ``leg``'s namespace."""
        return f"ws://{leg.host_ip}:{self.port}"

    def _config_yaml(self, log_level: str) -> str:
        config = {
            "port": self.port,
            "bind_addresses": [LOOPBACK, *(leg.host_ip for leg in self.legs)],
            "rtc": {
                "tcp_port": 0,  # no ICE/TCP candidate: it would bypass the relays
                "udp_port": self.udp_port,
                "node_ip": LOOPBACK,
                "use_external_ip": False,
                "enable_loopback_candidate": False,
                # One media address for all: pion keeps one of several candidates that the node_ip
                # rewrites to the same 127.0.0.1:port, and drops what arrives on the others (measured:
                # whichever client came second never connected).
                "interfaces": {"includes": [self.legs[0].host_dev]},
            },
            "keys": {self.api_key: self.api_secret},
            "logging": {"level": log_level, "json": False},
        }
        return json.dumps(config, indent=2) + "\n"

    def start(self) -> None:
        if self.running:
            return
        argv = [self.binary, "--dev", "--config", str(self.config_path)]
        self._spawn(argv)
        _wait_until(self._answers_http, self.startup_timeout, f"livekit-server on {self.url}",
                    self._proc, self.log_path)


class UdpRelay:
    """The relay process (``python tests/netpath.py relay``) inside ``leg``'s namespace, between
    127.0.0.1:``port`` there and the server at ``upstream``; commands over its stdin, answers on
    its stdout (JSON lines)."""

    def __init__(self, leg: Leg, port: int, upstream: tuple[str, int], link: Link, seed: int) -> None:
        argv = [sys.executable, str(Path(__file__).resolve()), "relay", "--listen", f"{LOOPBACK}:{port}",
                "--upstream", f"{upstream[0]}:{upstream[1]}", "--bind", leg.ns_ip,
                "--delay-s", str(link.leg_delay_s), "--loss", str(link.leg_loss), "--seed", str(seed),
                "--uid", str(RELAY_UID)]
        self._proc = subprocess.Popen(leg.exec_argv(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True, start_new_session=True)
        line = self._readline(RELAY_START_TIMEOUT_S)
        if line.strip() != "ready":
            self.close()
            raise ComponentError(f"the UDP relay did not start: {line!r}")

    def _readline(self, timeout: float) -> str:
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        if not ready:
            raise ComponentError("the UDP relay did not answer")
        return self._proc.stdout.readline()

    def command(self, **cmd: Any) -> dict[str, Any]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(cmd) + "\n")
        self._proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self._readline(5.0))
        return answer

    def stats(self) -> dict[str, Any]:
        """``up`` (clients -> server) and ``down`` counters (packets, bytes, dropped) and per
        client the bytes each way."""
        return self.command(cmd="stats")

    def blackout(self, seconds: float) -> None:
        """Drop every packet, both directions, for ``seconds`` from now (a burst of loss)."""
        self.command(cmd="blackout", seconds=seconds)

    def drop_media_up(self, seconds: float) -> None:
        """Drop every RTP and RTCP packet from the clients to the server for ``seconds`` from now,
        and nothing else: ICE (STUN) and DTLS go on, so the connection looks alive to both ends
        while no media arrives."""
        self.command(cmd="drop_media_up", seconds=seconds)

    def trace(self, on: bool) -> list[list[Any]]:
        """Start recording the clear headers of the RTP and RTCP packets this relay sees, with
        their fate (``on``), or stop and return what was recorded (``Relay.record``)."""
        records: list[list[Any]] = self.command(cmd="trace", on=on)["records"]
        return records

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()


class _InLeg:
    """Mixin for devstack's process helpers: the process runs inside ``self.leg``'s namespace."""

    leg: Leg

    def _spawn(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        spawned: subprocess.Popen[bytes] = super()._spawn(self.leg.exec_argv(argv), **kwargs)  # type: ignore[misc]
        return spawned


class LegRunner(_InLeg, Runner):
    """The runner (``python -m runner``) inside a leg's namespace; X is reached through its
    socket file, which namespaces share."""

    def __init__(self, leg: Leg, server: ImpairedLiveKit, *, room: str, passphrase: str, display: str,
                 extra_env: dict[str, str] | None = None) -> None:
        self.leg = leg
        super().__init__(livekit_url=server.url_from(leg), api_key=server.api_key, api_secret=server.api_secret,
                         room=room, passphrase=passphrase, display=display, extra_env=extra_env)


class LegViewerServer(_InLeg, ViewerServer):
    """The viewer page server inside a leg's namespace (its 127.0.0.1 is the namespace's own)."""

    def __init__(self, leg: Leg) -> None:
        self.leg = leg
        super().__init__()


class ImpairedPath:
    """Two legs (runner, browser), livekit-server between them, a relay in each leg, as one
    context manager. ``server`` is the LiveKitServer (its ``url`` is for the host: tokens, checks),
    ``runner_leg`` / ``browser_leg`` are where to start the runner and the browser
    (``LegRunner``, ``chromium_in``)."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._closers: list[Any] = []
        try:
            self.runner_leg = self._keep(Leg("r"))
            self.browser_leg = self._keep(Leg("b"))
            self.set_rate(link.rate_bps)
            self.server = self._keep(ImpairedLiveKit([self.runner_leg, self.browser_leg]))
            port = self.server.udp_port
            for leg in (self.runner_leg, self.browser_leg):
                leg.only_relay_reaches(port)
            self.relays = {
                name: self._keep(UdpRelay(leg, port, self.server.media_address, link, seed=link.seed + 10 * i))
                for i, (name, leg) in enumerate((("runner", self.runner_leg), ("browser", self.browser_leg)))
            }
        except BaseException:
            self.close()
            raise

    def _keep(self, thing: T) -> T:
        self._closers.append(thing)
        return thing

    def set_rate(self, rate_bps: int | None) -> None:
        """The bottleneck of both legs, both ways (None: no limit); can change while running."""
        for leg in (self.runner_leg, self.browser_leg):
            leg.shape(rate_bps, self.link.queue_ms)

    def blackout(self, seconds: float) -> None:
        """Every packet on both legs, both ways, dropped for ``seconds`` from now."""
        for relay in self.relays.values():
            relay.blackout(seconds)

    def counters(self) -> dict[str, Any]:
        """Per leg: the relay's counters and both tbf queues' (``to_ns``: towards the client)."""
        return {name: {"relay": self.relays[name].stats(), "tbf": leg.tbf_stats()}
                for name, leg in (("runner", self.runner_leg), ("browser", self.browser_leg))}

    def close(self) -> None:
        """Stop everything in reverse order of creation; every part is tried."""
        errors = []
        while self._closers:
            thing = self._closers.pop()
            try:
                thing.close() if hasattr(thing, "close") else thing.stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def chromium_in(leg: Leg) -> Iterator[str]:
    """The path of an executable that runs Chromium inside ``leg``'s namespace, for Playwright's
    ``executable_path`` (``ip netns exec`` execs it, so Playwright's pipes reach the browser)."""
    from realenv import CHROMIUM_PATH

    with tempfile.TemporaryDirectory(prefix="netpath-") as tmp:
        wrapper = Path(tmp) / "chromium"
        wrapper.write_text(f'#!/bin/sh\nexec {shlex.join(leg.exec_argv([CHROMIUM_PATH]))} "$@"\n')
        wrapper.chmod(0o755)
        yield str(wrapper)


# --- the relay process ------------------------------------------------------------------------------


@dataclass
class Direction:
    """Counters and the loss decisions of one direction (a seeded generator: the n-th packet's fate
    is the same in every run)."""

    rng: random.Random
    packets: int = 0
    bytes: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"packets": self.packets, "bytes": self.bytes, "dropped": self.dropped}


class Relay:
    """Forwards datagrams between clients (at ``listen``) and ``upstream``, one upstream socket per
    client (as a NAT does), with ``delay_s`` and ``loss`` per direction."""

    def __init__(self, upstream: tuple[str, int], bind_ip: str, delay_s: float, loss: float, seed: int) -> None:
        self.upstream, self.bind_ip = upstream, bind_ip
        self.delay_s, self.loss = delay_s, loss
        self.up = Direction(random.Random(seed))
        self.down = Direction(random.Random(seed + 1))
        self.blackout_until = 0.0
        self.media_up_dropped_until = 0.0  # see UdpRelay.drop_media_up
        self.listener: asyncio.DatagramTransport | None = None
        self.clients: dict[tuple[str, int], asyncio.DatagramTransport] = {}
        self.opening: dict[tuple[str, int], list[bytes]] = {}
        self.client_bytes: dict[tuple[str, int], list[int]] = {}
        self.records: list[list[Any]] | None = None  # see record

    def record(self, up: bool, addr: tuple[str, int], data: bytes, passed: bool) -> None:
        """While tracing: one row per RTP or RTCP packet, from the fields SRTP and SRTCP leave in
        the clear: [time.monotonic() s, "u" (client to server) or "d", passed (0: dropped here),
        the client's port, size, "rtp", payload type, marker, padding, SSRC, sequence number, RTP
        timestamp] or [..., "rtcp", packet type, count/format, sender SSRC] (a compound packet's
        first only). STUN and DTLS are left out."""
        if self.records is None or len(data) < 12 or data[0] >> 6 != 2:
            return
        head = [round(time.monotonic(), 4), "u" if up else "d", int(passed), addr[1], len(data)]
        if 192 <= data[1] <= 223:
            self.records.append([*head, "rtcp", data[1], data[0] & 0x1F, int.from_bytes(data[4:8])])
        else:
            self.records.append([*head, "rtp", data[1] & 0x7F, data[1] >> 7, (data[0] >> 5) & 1,
                                        int.from_bytes(data[8:12]), int.from_bytes(data[2:4]),
                                        int.from_bytes(data[4:8])])

    def _passes(self, direction: Direction, size: int) -> bool:
        direction.packets += 1
        lost = direction.rng.random() < self.loss  # drawn for every packet, so the sequence is fixed
        if lost or time.monotonic() < self.blackout_until:
            direction.dropped += 1
            return False
        direction.bytes += size
        return True

    def _later(self, send: Any, *args: Any) -> None:
        if self.delay_s > 0:
            asyncio.get_running_loop().call_later(self.delay_s, send, *args)
        else:
            send(*args)

    def from_client(self, data: bytes, addr: tuple[str, int]) -> None:
        upstream = self.clients.get(addr)
        if upstream is not None:
            self._forward_up(upstream, addr, data)
        elif addr in self.opening:  # its socket is being opened: one socket per client, in order
            self.opening[addr].append(data)
        else:
            self.opening[addr] = [data]
            asyncio.get_running_loop().create_task(self._open_client(addr))

    def _forward_up(self, upstream: asyncio.DatagramTransport, addr: tuple[str, int], data: bytes) -> None:
        passed = self._passes(self.up, len(data))
        if passed and data and data[0] >> 6 == 2 and time.monotonic() < self.media_up_dropped_until:
            passed = False  # RTP or RTCP (version 2); STUN and DTLS start otherwise
            self.up.dropped += 1
            self.up.bytes -= len(data)
        self.record(True, addr, data, passed)
        if passed:
            self.client_bytes[addr][0] += len(data)
            self._later(upstream.sendto, data, self.upstream)

    async def _open_client(self, addr: tuple[str, int]) -> None:
        relay = self

        class Upstream(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, _from: tuple[str, int]) -> None:
                passed = relay._passes(relay.down, len(data))
                relay.record(False, addr, data, passed)
                if passed and relay.listener is not None:
                    relay.client_bytes[addr][1] += len(data)
                    relay._later(relay.listener.sendto, data, addr)

        # Not connected: the server may answer from its address on another leg (it listens on all).
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            Upstream, local_addr=(self.bind_ip, 0))
        self.clients[addr] = transport
        self.client_bytes[addr] = [0, 0]
        for data in self.opening.pop(addr):
            self._forward_up(transport, addr, data)

    def stats(self) -> dict[str, Any]:
        return {"up": self.up.as_dict(), "down": self.down.as_dict(),
                "clients": [{"client": f"{a[0]}:{a[1]}", "up_bytes": b[0], "down_bytes": b[1]}
                            for a, b in self.client_bytes.items()]}


async def relay_main(args: argparse.Namespace) -> None:
    host, port = args.listen.rsplit(":", 1)
    up_host, up_port = args.upstream.rsplit(":", 1)
    if args.uid is not None:  # see Leg.only_relay_reaches
        os.setgroups([])
        os.setgid(args.uid)
        os.setuid(args.uid)
    relay = Relay((up_host, int(up_port)), args.bind, args.delay_s, args.loss, args.seed)
    loop = asyncio.get_running_loop()

    class Listener(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            relay.from_client(data, addr)

    relay.listener, _ = await loop.create_datagram_endpoint(Listener, local_addr=(host, int(port)))
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    while line := await reader.readline():
        cmd = json.loads(line)
        match cmd.get("cmd"):
            case "stats":
                answer: dict[str, Any] = relay.stats()
            case "set":
                relay.delay_s, relay.loss = float(cmd["delay_s"]), float(cmd["loss"])
                answer = {"ok": True}
            case "blackout":
                relay.blackout_until = time.monotonic() + float(cmd["seconds"])
                answer = {"ok": True}
            case "drop_media_up":
                relay.media_up_dropped_until = time.monotonic() + float(cmd["seconds"])
                answer = {"ok": True}
            case "trace":
                answer = {"records": relay.records or []}
                relay.records = [] if cmd.get("on") else None
            case _:
                answer = {"error": f"unknown command {cmd.get('cmd')!r}"}
        print(json.dumps(answer), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="the UDP relay of tests/netpath.py")
    sub = parser.add_subparsers(dest="command", required=True)
    relay = sub.add_parser("relay")
    relay.add_argument("--listen", required=True, help="HOST:PORT the clients send to")
    relay.add_argument("--upstream", required=True, help="HOST:PORT of the server")
    relay.add_argument("--bind", required=True, help="local address of the upstream sockets")
    relay.add_argument("--delay-s", type=float, default=0.0)
    relay.add_argument("--loss", type=float, default=0.0)
    relay.add_argument("--seed", type=int, default=1)
    relay.add_argument("--uid", type=int, help="run as this user once started")
    args = parser.parse_args()
    asyncio.run(relay_main(args))


if __name__ == "__main__":
    main()
