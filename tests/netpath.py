"""An impaired network path between the runner and the browser, for tests and the benchmark.

This kernel has no netem, so the path is built from two parts that do work here (see the README,
"Behaviour on real links"):

- ``NetNamespace``: a network namespace and a veth pair that this process creates (and always
  deletes again), addressed from a private /30 that exists only inside this machine, with a
  ``tbf`` rate limit (a bounded queue) on *both* ends: the host side shapes what goes into the
  namespace, the namespace side what comes out.
- ``ImpairedLiveKit``: livekit-server runs *inside* that namespace. The runner and the browser stay
  on the host and reach it (signalling and media) only across the veth, so every media packet
  crosses it twice: runner -> server (host -> namespace) and server -> browser (namespace -> host),
  each through its own tbf. The server announces 127.0.0.1:<its UDP port> as its only ICE
  candidate (``node_ip``), where
- ``UdpRelay`` (a separate process, asyncio) listens and forwards each client's packets from a
  socket of its own to the server's real address across the veth, adding delay and loss (a seeded
  random generator per direction) in both directions, and counting what it forwards and drops.

``Link`` describes the path end to end (runner to browser); each leg gets half the delay and the
loss that makes both legs together lose ``loss``. Counters (``UdpRelay.stats``,
``NetNamespace.tbf_stats``) prove that the media went through the impairment.

Needs root (``ip netns``, ``ip link``, ``tc``). The relay runs as ``python tests/netpath.py relay ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import random
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))

from devstack import (  # noqa: E402
    LOOPBACK,
    ComponentError,
    LiveKitServer,
    _udp_port_is_free,
    _wait_until,
)

# Private /30s for the veth pair are picked in here, avoiding any network the host already routes.
SUBNET_POOL = ipaddress.ip_network("10.213.0.0/16")
# tbf's queue bound: a packet that would wait longer than this in the queue is dropped, as a
# bottleneck router with a modest buffer does.
DEFAULT_QUEUE_MS = 100
RELAY_START_TIMEOUT_S = 10.0


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


class NetNamespace:
    """A network namespace with a veth pair to the host, made by this process; ``close()`` (also on
    ``with`` exit) deletes both. ``host_ip`` is the host end, ``ns_ip`` the namespace end."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.name = f"drnet-{tag}"
        self.host_dev, self.ns_dev = f"drn{tag}h", f"drn{tag}n"
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
        except BaseException:
            self.close()
            raise

    def _tc(self, side: str, *args: str) -> subprocess.CompletedProcess[str]:
        if side == "host":
            return _run(["tc", *args[:3], self.host_dev, *args[3:]])
        return _run(["ip", "netns", "exec", self.name, "tc", *args[:3], self.ns_dev, *args[3:]])

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
    """livekit-server --dev inside ``netns``, reachable only across the veth; its single ICE/UDP
    port is announced as 127.0.0.1:``udp_port`` (where the relay listens) and ICE/TCP is off, so
    clients have no way around the relay."""

    def __init__(self, netns: NetNamespace, **kwargs: Any) -> None:
        self.netns = netns
        self.udp_port = _free_udp_port()
        super().__init__(**kwargs)

    @property
    def url(self) -> str:
        return f"ws://{self.netns.ns_ip}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.netns.ns_ip}:{self.port}"

    def _config_yaml(self, log_level: str) -> str:
        config = {
            "port": self.port,
            "bind_addresses": [self.netns.ns_ip],
            "rtc": {
                "tcp_port": 0,  # no ICE/TCP candidate: it would bypass the relay
                "udp_port": self.udp_port,
                "node_ip": LOOPBACK,
                "use_external_ip": False,
                "enable_loopback_candidate": False,
                "interfaces": {"includes": [self.netns.ns_dev]},
            },
            "keys": {self.api_key: self.api_secret},
            "logging": {"level": "info", "json": False},
        }
        return json.dumps(config, indent=2) + "\n"

    def start(self) -> None:
        if self.running:
            return
        argv = [self.binary, "--dev", "--bind", self.netns.ns_ip, "--config", str(self.config_path)]
        self._spawn(self.netns.exec_argv(argv))
        _wait_until(self._answers_http, self.startup_timeout, f"livekit-server on {self.url}",
                    self._proc, self.log_path)


class UdpRelay:
    """The relay process (``python tests/netpath.py relay``) between 127.0.0.1:``port`` and the
    server at ``upstream``; commands over its stdin, answers on its stdout (JSON lines)."""

    def __init__(self, port: int, upstream: tuple[str, int], bind_ip: str, link: Link) -> None:
        argv = [sys.executable, str(Path(__file__).resolve()), "relay", "--listen", f"{LOOPBACK}:{port}",
                "--upstream", f"{upstream[0]}:{upstream[1]}", "--bind", bind_ip,
                "--delay-s", str(link.leg_delay_s), "--loss", str(link.leg_loss), "--seed", str(link.seed)]
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                      start_new_session=True)
        line = self._readline(RELAY_START_TIMEOUT_S)
        if line.strip() != "ready":
            self.close()
            raise ComponentError(f"the UDP relay did not start: {line!r}")

    def _readline(self, timeout: float) -> str:
        assert self._proc.stdout is not None
        import select

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

    def set_impairment(self, *, delay_s: float, loss: float) -> None:
        self.command(cmd="set", delay_s=delay_s, loss=loss)

    def blackout(self, seconds: float) -> None:
        """Drop every packet, both directions, for ``seconds`` from now (a burst of loss)."""
        self.command(cmd="blackout", seconds=seconds)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()


class ImpairedPath:
    """Namespace + tbf + livekit-server inside + relay, as one context manager: ``.server`` is the
    LiveKitServer to use, ``.relay`` and ``.netns`` the counters and knobs."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.netns = NetNamespace()
        try:
            self.netns.shape(link.rate_bps, link.queue_ms)
            self.server = ImpairedLiveKit(self.netns)
            try:
                self.relay = UdpRelay(self.server.udp_port, (self.netns.ns_ip, self.server.udp_port),
                                      self.netns.host_ip, link)
            except BaseException:
                self.server.stop()
                raise
        except BaseException:
            self.netns.close()
            raise

    def set_rate(self, rate_bps: int | None) -> None:
        self.netns.shape(rate_bps, self.link.queue_ms)

    def counters(self) -> dict[str, Any]:
        return {"relay": self.relay.stats(), "tbf": self.netns.tbf_stats()}

    def close(self) -> None:
        try:
            self.relay.close()
        finally:
            try:
                self.server.stop()
            finally:
                self.netns.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
        self.listener: asyncio.DatagramTransport | None = None
        self.clients: dict[tuple[str, int], asyncio.DatagramTransport] = {}
        self.client_bytes: dict[tuple[str, int], list[int]] = {}

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
        if upstream is None:
            asyncio.get_running_loop().create_task(self._open_client(addr, data))
            return
        self._forward_up(upstream, addr, data)

    def _forward_up(self, upstream: asyncio.DatagramTransport, addr: tuple[str, int], data: bytes) -> None:
        if self._passes(self.up, len(data)):
            self.client_bytes[addr][0] += len(data)
            self._later(upstream.sendto, data)

    async def _open_client(self, addr: tuple[str, int], first: bytes) -> None:
        if addr in self.clients:
            self._forward_up(self.clients[addr], addr, first)
            return
        relay = self

        class Upstream(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, _from: tuple[str, int]) -> None:
                if relay._passes(relay.down, len(data)) and relay.listener is not None:
                    relay.client_bytes[addr][1] += len(data)
                    relay._later(relay.listener.sendto, data, addr)

        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            Upstream, local_addr=(self.bind_ip, 0), remote_addr=self.upstream)
        self.clients[addr] = transport
        self.client_bytes[addr] = [0, 0]
        self._forward_up(transport, addr, first)

    def stats(self) -> dict[str, Any]:
        return {"up": self.up.as_dict(), "down": self.down.as_dict(),
                "clients": [{"client": f"{a[0]}:{a[1]}", "up_bytes": b[0], "down_bytes": b[1]}
                            for a, b in self.client_bytes.items()]}


async def relay_main(args: argparse.Namespace) -> None:
    host, port = args.listen.rsplit(":", 1)
    up_host, up_port = args.upstream.rsplit(":", 1)
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
    args = parser.parse_args()
    asyncio.run(relay_main(args))


if __name__ == "__main__":
    main()
