"""Python side of the Node host that runs livekit-client's shipped E2EE worker.

A long-lived ``node tests/interop/e2ee_worker_host.mjs`` process (see that file) runs the unmodified
``dist/livekit-client.e2ee.worker.mjs``; this client speaks its JSON-lines protocol.
"""

from __future__ import annotations

import base64
import collections
import itertools
import json
import queue
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livekit.protocol.models import DataPacket

REPO = Path(__file__).resolve().parents[2]
HOST_SCRIPT = Path(__file__).with_name("e2ee_worker_host.mjs")
WORKER_BUNDLE = REPO / "node_modules/livekit-client/dist/livekit-client.e2ee.worker.mjs"
REPLY_TIMEOUT_S = 30.0
STDERR_LINES_KEPT = 50

SENDER = "runner"  # the participant whose frames JS encrypts or decrypts
MIME_TYPES = {"h264": "video/H264", "h265": "video/H265", "vp8": "video/VP8", "vp9": "video/VP9"}


class WorkerHostError(RuntimeError):
    """The Node host answered a request with an error."""


@dataclass(frozen=True)
class JsFrame:
    """One RTCEncodedVideoFrame/RTCEncodedAudioFrame handed to the JS worker."""

    data: bytes
    codec: str  # h264 | h265 | vp8 | vp9 | opus
    keyframe: bool = False
    ssrc: int = 1234
    timestamp: int = 90_000
    with_mime_type: bool = True

    def to_json(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "data": base64.b64encode(self.data).decode(),
            "kind": "audio" if self.codec == "opus" else "video",
            "type": "key" if self.keyframe else "delta",
            "ssrc": self.ssrc,
            "timestamp": self.timestamp,
            "payloadType": 111 if self.codec == "opus" else 96,
        }
        if self.with_mime_type and self.codec in MIME_TYPES:
            spec["mimeType"] = MIME_TYPES[self.codec]
        return spec


class WorkerHost:
    """Client for e2ee_worker_host.mjs: JSON lines over the Node process's stdin/stdout."""

    def __init__(self) -> None:
        node = shutil.which("node")
        assert node, "Node (>= 20) is needed for the interop suite"
        assert WORKER_BUNDLE.exists(), f"missing {WORKER_BUNDLE}: run npm ci"
        self._process = subprocess.Popen(
            [node, str(HOST_SCRIPT)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._replies: queue.Queue[str] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES_KEPT)
        self._ids = itertools.count(1)
        threading.Thread(target=self._read_replies, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _read_replies(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._replies.put(line)

    def _drain_stderr(self) -> None:
        # Keep reading so Node never blocks on a full pipe; the tail goes into error messages.
        assert self._process.stderr is not None
        for line in self._process.stderr:
            self._stderr.append(line.rstrip())

    def call(self, op: str, **arguments: object) -> dict[str, Any]:
        request_id = next(self._ids)
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"id": request_id, "op": op, **arguments}) + "\n")
        self._process.stdin.flush()
        try:
            reply = json.loads(self._replies.get(timeout=REPLY_TIMEOUT_S))
        except queue.Empty:
            raise WorkerHostError(
                f"no reply to {op} within {REPLY_TIMEOUT_S} s; node stderr: {list(self._stderr)}"
            ) from None
        assert reply["id"] == request_id, reply
        if not reply["ok"]:
            raise WorkerHostError(f"{op}: {reply['error']}\nworker log: {reply.get('logs')}")
        result: dict[str, Any] = reply["result"]
        return result

    # -- worker lifecycle and keys --------------------------------------------------------------

    def reset(self, **options: object) -> None:
        """Load a fresh worker and send 'init' (defaults: ExternalE2EEKeyProvider's options)."""
        self.call("reset", **options)

    def set_key(
        self, material: bytes, *, kdf: str = "pbkdf2", key_index: int | None = None,
        participant: str | None = None,
    ) -> None:
        arguments: dict[str, Any] = {"material": _b64(material), "kdf": kdf}
        if key_index is not None:
            arguments["keyIndex"] = key_index
        if participant is not None:
            arguments["participant"] = participant
        self.call("setKey", **arguments)

    def enable(self, participant: str, enabled: bool = True) -> None:
        self.call("enable", participant=participant, enabled=enabled)

    def ratchet(self, participant: str, key_index: int | None = None) -> bytes:
        arguments: dict[str, Any] = {"participant": participant}
        if key_index is not None:
            arguments["keyIndex"] = key_index
        return base64.b64decode(self.call("ratchet", **arguments)["chainKey"])

    def pin_random(self, value: float | None) -> None:
        self.call("pinRandom", value=value)

    # -- frames -------------------------------------------------------------------------------

    def encode(self, frames: list[JsFrame], *, participant: str = SENDER, track: str = "t",
               codec: str | None = None, timeout_ms: int = 10_000) -> list[bytes | None]:
        """Frames through the worker's encrypt transform; None where the worker dropped one."""
        return self._transform("encode", frames, participant, track, codec, timeout_ms)

    def decode(self, frames: list[JsFrame], *, participant: str = SENDER, track: str = "t",
               codec: str | None = None, timeout_ms: int = 10_000) -> list[bytes | None]:
        """Frames through the worker's decrypt transform; None where the worker dropped one."""
        return self._transform("decode", frames, participant, track, codec, timeout_ms)

    def _transform(self, op: str, frames: list[JsFrame], participant: str, track: str,
                   codec: str | None, timeout_ms: int) -> list[bytes | None]:
        arguments: dict[str, Any] = {
            "participant": participant,
            "trackId": track,
            "frames": [frame.to_json() for frame in frames],
            "timeoutMs": timeout_ms,
        }
        if codec is not None:
            arguments["codec"] = codec
        results = self.call(op, **arguments)["frames"]
        return [None if r["data"] is None else base64.b64decode(r["data"]) for r in results]

    # -- data packets -------------------------------------------------------------------------

    def encrypt_data(self, packet: DataPacket, *, participant: str = SENDER) -> DataPacket:
        """RTCEngine.sendDataPacket with data channel encryption: the packet JS puts on the wire."""
        result = self.call("encryptData", participant=participant,
                           packet=_b64(packet.SerializeToString()))
        wire = DataPacket()
        wire.ParseFromString(base64.b64decode(result["packet"]))
        return wire

    def decrypt_data(self, wire: DataPacket | bytes) -> DataPacket | str:
        """RTCEngine's receive path: the DataPacket JS emits, or the worker's error text."""
        raw = wire.SerializeToString() if isinstance(wire, DataPacket) else wire
        result = self.call("decryptData", packet=_b64(raw))
        if "error" in result:
            error: str = result["error"]
            return error
        packet = DataPacket()
        packet.ParseFromString(base64.b64decode(result["packet"]))
        return packet

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kept(frames: list[bytes | None]) -> list[bytes]:
    """The frames the worker returned, failing if it dropped any (None)."""
    out = [frame for frame in frames if frame is not None]
    assert len(out) == len(frames), f"the worker dropped {len(frames) - len(out)} of {len(frames)} frames"
    return out
