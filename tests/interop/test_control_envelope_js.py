"""The viewer's control envelope and session (viewer/control.js) against the Python side.

viewer/control.js runs unmodified in Node (control_envelope.mjs --serve). It must reproduce the
published vectors byte for byte, refuse every bad case, keep the same replay window as
runner.control.envelope, and exchange envelopes with it both ways. ControlSession runs over a fake
livekit-client Room whose RPC and data packets this file answers as the runner would, with
runner.control.envelope doing the sealing.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import random
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.control import envelope as env

pytestmark = pytest.mark.integration  # runs the viewer's JS in Node

REPO = Path(__file__).resolve().parents[2]
HOST_SCRIPT = Path(__file__).with_name("control_envelope.mjs")
VECTORS = json.loads((REPO / "tests/vectors/control_envelope.json").read_text(encoding="utf-8"))
REPLY_TIMEOUT_S = 30.0

PASSPHRASE = "correct horse battery staple"
VIEWER = "viewer-1"
RUNNER = "desktop-runner"
MONITORS = [{"id": "DUMMY0", "name": "DUMMY0", "x": 0, "y": 0, "width": 1280, "height": 720,
             "primary": True, "scale": 1.0}]


class NodeError(RuntimeError):
    """The Node host answered a request with an error."""


class NodeHost:
    """Client of control_envelope.mjs --serve; plays the runner for the session_* ops."""

    def __init__(self) -> None:
        node = shutil.which("node")
        assert node, "Node (>= 20) is needed for the interop suite"
        # viewer/*.js are ES modules in a package without "type": "module": Node detects that
        # and warns on stderr; the warning is noise here.
        self._process = subprocess.Popen(
            [node, str(HOST_SCRIPT), "--serve"],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._next_id = 0
        self.runner: FakeRunner | None = None
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line)

    def _write(self, message: dict[str, Any]) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(message) + "\n")
        self._process.stdin.flush()

    def request(self, op: str, **args: Any) -> Any:
        """Run one op; meanwhile answer the fake room's RPC and collect its events."""
        self._next_id += 1
        rid = self._next_id
        self._write({"id": rid, "op": op, **args})
        while True:
            try:
                line = self._lines.get(timeout=REPLY_TIMEOUT_S)
            except queue.Empty:
                pipe = self._process.stderr
                stderr = pipe.read() if self._process.poll() is not None and pipe is not None else ""
                raise AssertionError(f"no reply to {op} within {REPLY_TIMEOUT_S} s {stderr}") from None
            message = json.loads(line)
            if "event" in message:
                self.events.append(message)
                if message["event"] == "rpc":
                    assert self.runner is not None, "an RPC with no runner to answer it"
                    self._write({"op": "rpc_reply", "rid": message["rid"], **self.runner.on_rpc(message)})
                elif message["event"] == "data" and self.runner is not None:
                    self.runner.on_data(message)
                continue
            if message.get("id") != rid:
                continue
            if not message["ok"]:
                raise NodeError(message["error"])
            return message["result"]

    def events_of(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]

    def close(self) -> None:
        if self._process.stdin:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()


class FakeRunner:
    """The host side of docs/protocol.md, as little as ControlSession needs, on runner.control.envelope.

    Mirrors runner/control/server.py where it matters: plain RPC errors ``unauthenticated`` and
    ``no_session``, one outgoing counter per session for responses and pushes.
    """

    def __init__(self, passphrase: str = PASSPHRASE, key_index: int = 0) -> None:
        self.key = env.derive_control_key(passphrase)
        self.key_index = key_index
        self.sessions: dict[int, dict[str, Any]] = {}
        self.hellos = 0
        self.calls: list[tuple[str, dict[str, Any], int, int]] = []  # method, params, session, seq
        self.inputs: list[dict[str, Any]] = []
        self.answers: dict[str, dict[str, Any]] = {}  # method -> response body to give
        self.tamper_hello_nonce = False

    @staticmethod
    def _plain(message: str) -> dict[str, Any]:
        return {"error_code": 401, "error_message": message}

    def on_rpc(self, event: dict[str, Any]) -> dict[str, Any]:
        method, caller = event["method"], VIEWER
        assert event["destination"] == RUNNER
        raw = base64.b64decode(event["payload"], validate=True)
        try:
            header = env.parse_header(raw)
            if header.key_index != self.key_index:
                raise env.EnvelopeError("auth", "key index")
            opened = env.open_envelope(self.key, raw, sender=caller, recipient=RUNNER, context=method)
        except env.EnvelopeError:
            return self._plain("unauthenticated")
        params = json.loads(opened.body)
        if method == "dr.hello":
            assert header.session == 0 and header.kind == env.KIND_RPC_REQUEST
            sid = random.getrandbits(64) or 1
            self.sessions[sid] = {"window": env.ReplayWindow(), "seq": 0}
            self.hellos += 1
            nonce = base64.b64encode(os.urandom(16)).decode() if self.tamper_hello_nonce else params["nonce"]
            result: dict[str, object] = {"session": f"{sid:016x}", "nonce": nonce, "protocol": 2, "runner": RUNNER,
                      "monitors": MONITORS, "selected": "DUMMY0", "controller": None,
                      "view_only": False, "clipboard": "both", "limits": {}}
            return self._answer(sid, f"dr.hello#{header.seq}", {"ok": True, "result": result})
        session = self.sessions.get(header.session)
        if session is None:
            return self._plain("no_session")
        if not session["window"].accept(header.seq):
            return self._plain("unauthenticated")
        self.calls.append((method, params, header.session, header.seq))
        body = self.answers.get(method, {"ok": True, "result": {"echo": params}})
        return self._answer(header.session, f"{method}#{header.seq}", body)

    def _answer(self, sid: int, context: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"payload": base64.b64encode(self.seal(sid, env.KIND_RPC_RESPONSE, context, body)).decode()}

    def seal(self, sid: int, kind: int, context: str, body: dict[str, Any], *, recipient: str = VIEWER) -> bytes:
        session = self.sessions[sid]
        session["seq"] += 1
        return env.seal(self.key, kind=kind, key_index=self.key_index, session=sid, seq=session["seq"],
                        sender=RUNNER, recipient=recipient, context=context,
                        body=json.dumps(body, separators=(",", ":")).encode())

    def push(self, sid: int, body: dict[str, Any], **kwargs: Any) -> str:
        return self.seal(sid, env.KIND_PUSH, env.DATA_CONTEXT, body, **kwargs).hex()

    def on_data(self, event: dict[str, Any]) -> None:
        raw = bytes.fromhex(event["payload_hex"])
        header = env.parse_header(raw)
        opened = env.open_envelope(self.key, raw, sender=VIEWER, recipient=RUNNER, context=env.DATA_CONTEXT)
        self.inputs.append({"header": header, "body": json.loads(opened.body), "raw_body": opened.body,
                            "reliable": event["reliable"],
                            "topic": event["topic"], "destinations": event["destinations"]})


@pytest.fixture(scope="module")
def node() -> Iterator[NodeHost]:
    host = NodeHost()
    yield host
    host.close()


@pytest.fixture
def runner(node: NodeHost) -> FakeRunner:
    """A fresh fake runner and a fresh ControlSession (not yet opened) for VIEWER."""
    node.runner = FakeRunner()
    node.request("session_start", local=VIEWER, runner=RUNNER, passphrase=PASSPHRASE, key_index=0)
    node.events.clear()  # after: closing the previous session emits its "closed"
    return node.runner


def vector_id(case: dict[str, Any]) -> str:
    name: str = case["name"]
    return name.replace(" ", "-")


# --- published vectors ----------------------------------------------------------------------------

@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=vector_id)
def test_vector_key_is_derived_from_passphrase(node: NodeHost, vector: dict[str, Any]) -> None:
    assert node.request("derive", passphrase=vector["passphrase"]) == vector["key_hex"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=vector_id)
def test_vector_seals_byte_for_byte(node: NodeHost, vector: dict[str, Any]) -> None:
    args = {k: vector[k] for k in ("passphrase", "kind", "key_index", "session", "seq", "sender",
                                   "recipient", "context", "body_utf8", "nonce_hex")}
    assert node.request("seal", **args) == vector["envelope_hex"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=vector_id)
def test_vector_base64_is_standard_with_padding(node: NodeHost, vector: dict[str, Any]) -> None:
    assert node.request("base64", hex=vector["envelope_hex"]) == vector["envelope_base64"]
    assert node.request("base64", text=vector["envelope_base64"]) == vector["envelope_hex"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=vector_id)
def test_vector_opens_to_its_body(node: NodeHost, vector: dict[str, Any]) -> None:
    opened = node.request("open", key_hex=vector["key_hex"], envelope_hex=vector["envelope_hex"],
                          sender=vector["sender"], recipient=vector["recipient"], context=vector["context"])
    assert opened == {
        "opened": True, "kind": vector["kind"], "key_index": vector["key_index"], "session": vector["session"],
        "seq": vector["seq"], "nonce_hex": vector["nonce_hex"], "body_utf8": vector["body_utf8"],
    }


@pytest.mark.parametrize("case", VECTORS["bad"], ids=vector_id)
def test_bad_case_does_not_open(node: NodeHost, case: dict[str, Any]) -> None:
    opened = node.request("open", **{k: case[k] for k in ("key_hex", "envelope_hex", "sender", "recipient", "context")})
    assert opened["opened"] is False
    assert opened["code"] == "auth"


def test_bad_base64_is_refused(node: NodeHost) -> None:
    with pytest.raises(NodeError, match="not standard base64"):
        node.request("base64", text="AQI")  # no padding
    with pytest.raises(NodeError, match="not standard base64"):
        node.request("base64", text="AQ-_")


# --- replay window --------------------------------------------------------------------------------

def test_replay_duplicate_is_rejected(node: NodeHost) -> None:
    assert node.request("replay", steps=[["accept", "5"], ["accept", "5"]]) == [True, False]


def test_replay_64_behind_is_rejected_63_behind_accepted(node: NodeHost) -> None:
    steps = [["accept", "100"], ["check", "36"], ["accept", "37"], ["accept", "36"]]
    assert node.request("replay", steps=steps) == [True, False, True, False]


def test_replay_out_of_order_within_window_is_accepted(node: NodeHost) -> None:
    steps = [["accept", s] for s in ("1", "3", "2", "10", "5", "4", "70", "9")]
    assert node.request("replay", steps=steps) == [True, True, True, True, True, True, True, True]


def test_replay_window_at_the_top_of_64_bits(node: NodeHost) -> None:
    top = str(2**64 - 1)
    steps = [["accept", str(2**64 - 2)], ["accept", top], ["accept", top], ["accept", str(2**64 - 64)]]
    assert node.request("replay", steps=steps) == [True, True, False, True]


def test_replay_window_matches_python_on_a_random_walk(node: NodeHost) -> None:
    rng = random.Random(1234)
    seqs, top = [], 1
    for _ in range(600):
        top += rng.choice([0, 1, 1, 2, 3, 70])
        seqs.append(max(1, top - rng.choice([0, 0, 1, 5, 30, 63, 64, 65, 200])))
    expected, window = [], env.ReplayWindow()
    for s in seqs:
        expected.append(window.accept(s))
    assert node.request("replay", steps=[["accept", str(s)] for s in seqs]) == expected


# --- envelopes both ways --------------------------------------------------------------------------

def test_js_sealed_envelope_opens_in_python(node: NodeHost) -> None:
    body = json.dumps({"t": "text", "text": "Grüße, 世界 🙂\n"}, ensure_ascii=False)
    sealed = [bytes.fromhex(node.request(
        "seal", passphrase=PASSPHRASE, kind=env.KIND_INPUT, key_index=7, session=str(2**63 + 5), seq="42",
        sender="ванна", recipient=RUNNER, context=env.DATA_CONTEXT, body_utf8=body)) for _ in range(2)]
    key = env.derive_control_key(PASSPHRASE)
    for envelope in sealed:
        opened = env.open_envelope(key, envelope, sender="ванна", recipient=RUNNER, context=env.DATA_CONTEXT)
        assert opened.body.decode() == body
        assert (opened.header.kind, opened.header.key_index, opened.header.session, opened.header.seq) == (
            env.KIND_INPUT, 7, 2**63 + 5, 42)
    assert sealed[0][20:32] != sealed[1][20:32], "nonces must be random"
    with pytest.raises(env.EnvelopeError):
        env.open_envelope(key, sealed[0], sender="someone-else", recipient=RUNNER, context=env.DATA_CONTEXT)


def test_python_sealed_envelope_opens_in_js(node: NodeHost) -> None:
    body = json.dumps({"ok": True, "result": {"text": "ü\u0000\"'"}})
    sealed = env.seal(env.derive_control_key(PASSPHRASE), kind=env.KIND_RPC_RESPONSE, key_index=15,
                      session=99, seq=3, sender=RUNNER, recipient=VIEWER, context="dr.clipboard.get#8",
                      body=body.encode())
    opened = node.request("open", passphrase=PASSPHRASE, envelope_hex=sealed.hex(), sender=RUNNER,
                          recipient=VIEWER, context="dr.clipboard.get#8")
    assert (opened["body_utf8"], opened["kind"], opened["key_index"], opened["session"], opened["seq"]) == (
        body, env.KIND_RPC_RESPONSE, 15, "99", "3")


# --- ControlSession over a fake room --------------------------------------------------------------

def test_session_hello_opens_and_calls_continue_its_numbering(node: NodeHost, runner: FakeRunner) -> None:
    hello = node.request("session_open")
    assert hello["ok"] and hello["result"]["monitors"] == MONITORS
    assert len(node.events_of("session")) == 1
    answer = node.request("session_call", method="dr.ping", params={"t": 5})
    assert answer == {"ok": True, "result": {"echo": {"t": 5}}}
    [(method, params, sid, seq)] = runner.calls
    assert (method, params, seq) == ("dr.ping", {"t": 5}, 2)  # the hello was number 1
    assert node.request("session_state")["session"] == str(sid)


def test_session_opens_again_when_runner_reports_no_session(node: NodeHost, runner: FakeRunner) -> None:
    node.request("session_open")
    runner.sessions.clear()  # the runner restarted
    assert node.request("session_call", method="dr.stats", params={})["ok"]
    assert runner.hellos == 2
    assert [c[0] for c in runner.calls] == ["dr.stats"]


def test_session_sealed_error_becomes_error_code(node: NodeHost, runner: FakeRunner) -> None:
    node.request("session_open")
    runner.answers["dr.control.request"] = {"ok": False, "error": {"code": "busy", "message": "viewer-2 has control"}}
    answer = node.request("session_call", method="dr.control.request", params={})
    assert (answer["ok"], answer["code"]) == (False, "busy")
    assert "viewer-2 has control" in answer["message"]


def test_session_with_another_passphrase_is_unauthenticated(node: NodeHost) -> None:
    node.runner = FakeRunner(passphrase="the runner's passphrase")
    node.request("session_start", local=VIEWER, runner=RUNNER, passphrase="a stale passphrase", key_index=0)
    answer = node.request("session_open")
    assert (answer["ok"], answer["code"]) == (False, "unauthenticated")
    assert "stale" not in answer["message"]


def test_session_refuses_hello_answer_without_our_nonce(node: NodeHost, runner: FakeRunner) -> None:
    runner.tamper_hello_nonce = True
    answer = node.request("session_open")
    assert (answer["ok"], answer["code"]) == (False, "auth")
    assert node.request("session_state")["session"] is None


def test_session_input_is_sealed_for_the_runner_only(node: NodeHost, runner: FakeRunner) -> None:
    node.request("session_open")
    key = {"t": "key", "code": "KeyA", "key": "a", "down": True, "mods": []}
    assert node.request("session_send", message=key, reliable=True) == {"ok": True}
    move = {"t": "move", "mon": "DUMMY0", "x": 0.0, "y": 1.0}
    assert node.request("session_send", message=move, reliable=False) == {"ok": True}
    sid = int(node.request("session_state")["session"])
    received = [(i["body"], i["reliable"], i["header"].seq, i["header"].session, i["header"].kind)
                for i in runner.inputs]
    assert received == [
        ({**key, "o": 1}, True, 2, sid, env.KIND_INPUT), (move, False, 3, sid, env.KIND_INPUT)]
    assert [len(i["raw_body"]) for i in runner.inputs] == [256, 256]  # padded (docs/protocol.md)
    assert all(i["topic"] == env.DATA_CONTEXT and i["destinations"] == [RUNNER] for i in runner.inputs)


def test_session_refuses_oversized_input(node: NodeHost, runner: FakeRunner) -> None:
    node.request("session_open")
    answer = node.request("session_send", message={"t": "text", "text": "x" * 4050}, reliable=True)
    assert (answer["ok"], answer["code"]) == (False, "size")
    assert runner.inputs == []


def test_session_without_hello_sends_no_input(node: NodeHost, runner: FakeRunner) -> None:
    answer = node.request("session_send", message={"t": "reset"}, reliable=True)
    assert (answer["ok"], answer["code"]) == (False, "no_session")


def test_session_dispatches_pushes_and_rejects_replays(node: NodeHost, runner: FakeRunner) -> None:
    node.request("session_open")
    sid = int(node.request("session_state")["session"])
    control = {"t": "control", "controller": VIEWER, "you": True}
    push = runner.push(sid, control)
    assert node.request("session_deliver", payload_hex=push, sender=RUNNER, topic=env.DATA_CONTEXT) == {"rejected": 0}
    assert node.request("session_deliver", payload_hex=push, sender=RUNNER, topic=env.DATA_CONTEXT) == {"rejected": 1}
    assert [e["message"] for e in node.events_of("push")] == [control]
    assert [e["reason"] for e in node.events_of("rejected")] == ["replay"]


def test_session_rejects_push_sealed_for_another_viewer(node: NodeHost, runner: FakeRunner) -> None:
    node.request("session_open")
    sid = int(node.request("session_state")["session"])
    push = runner.push(sid, {"t": "clipboard", "text": "secret"}, recipient="viewer-2")
    assert node.request("session_deliver", payload_hex=push, sender=RUNNER, topic=env.DATA_CONTEXT) == {"rejected": 1}
    assert node.events_of("push") == []


def test_session_ignores_packets_from_others_and_other_topics(node: NodeHost, runner: FakeRunner) -> None:
    node.request("session_open")
    sid = int(node.request("session_state")["session"])
    push = runner.push(sid, {"t": "monitors", "monitors": MONITORS, "selected": "DUMMY0"})
    delivered = node.request("session_deliver", payload_hex=push, sender="intruder", topic=env.DATA_CONTEXT)
    assert delivered == {"rejected": 0}
    assert node.request("session_deliver", payload_hex=push, sender=RUNNER, topic="chat") == {"rejected": 0}
    assert node.events_of("push") == []


def test_session_ignores_pushes_to_a_session_it_left(node: NodeHost, runner: FakeRunner) -> None:
    node.request("session_open")
    old = int(node.request("session_state")["session"])
    runner.sessions.clear()  # a restart: the next call opens a new session
    assert node.request("session_call", method="dr.ping", params={"t": 1})["ok"]
    new = int(node.request("session_state")["session"])
    assert new != old
    runner.sessions[old] = {"window": env.ReplayWindow(), "seq": 5}  # still pushing to it
    stale = runner.push(old, {"t": "control", "controller": VIEWER, "you": False})
    assert node.request("session_deliver", payload_hex=stale, sender=RUNNER, topic=env.DATA_CONTEXT) == {"rejected": 0}
    fresh = runner.push(new, {"t": "control", "controller": VIEWER, "you": True})
    assert node.request("session_deliver", payload_hex=fresh, sender=RUNNER, topic=env.DATA_CONTEXT) == {"rejected": 0}
    assert [e["message"]["you"] for e in node.events_of("push")] == [True]


def test_session_set_key_moves_to_the_runners_new_key(node: NodeHost, runner: FakeRunner) -> None:
    node.request("session_open")
    runner.key, runner.key_index = env.derive_control_key("next passphrase"), 1
    runner.sessions.clear()  # rotation ends every session
    assert node.request("session_set_key", passphrase="next passphrase", key_index=1) == {"ok": True, "result": True}
    assert node.request("session_call", method="dr.ping", params={"t": 1})["ok"]
    assert node.request("session_state")["key_index"] == 1
    assert runner.hellos == 2


def test_session_set_key_ahead_of_the_runner_keeps_the_old_session(node: NodeHost, runner: FakeRunner) -> None:
    node.request("session_open")
    before = node.request("session_state")["session"]
    assert node.request("session_set_key", passphrase="not yet", key_index=2) == {"ok": True, "result": False}
    assert node.request("session_state")["session"] == before
    assert node.request("session_call", method="dr.ping", params={"t": 1})["ok"]


def test_session_reopens_with_the_old_key_at_the_same_index_until_the_runner_rotates(
        node: NodeHost, runner: FakeRunner) -> None:
    node.request("session_open")
    assert node.request("session_set_key", passphrase="next passphrase", key_index=0)["result"] is False
    runner.sessions.clear()  # e.g. we rejoined: a new session is needed, the runner is still on the old key
    assert node.request("session_call", method="dr.ping", params={"t": 1})["ok"]
    assert runner.hellos == 2


def test_session_opens_with_the_previous_key_while_the_runner_has_not_rotated(node: NodeHost) -> None:
    node.runner = FakeRunner()
    node.request("session_start", local=VIEWER, runner=RUNNER, passphrase="not yet", key_index=2,
                 previous={"passphrase": PASSPHRASE, "key_index": 0})
    assert node.request("session_open")["ok"]
    assert node.request("session_state")["key_index"] == 0


def test_session_survives_the_runner_reconnecting(node: NodeHost, runner: FakeRunner) -> None:
    node.request("session_open")
    before = node.request("session_state")["session"]
    node.request("session_room_event", name="participantConnected", identity=RUNNER)
    assert node.request("session_call", method="dr.stats", params={})["ok"]
    assert node.request("session_state")["session"] == before
    assert runner.hellos == 1
    assert [c[0] for c in runner.calls] == ["dr.ping", "dr.stats"]  # the probe, then ours


def test_session_reopens_when_the_restarted_runner_rejoins(node: NodeHost, runner: FakeRunner) -> None:
    node.request("session_open")
    runner.sessions.clear()
    node.request("session_room_event", name="participantConnected", identity=RUNNER)
    assert node.request("session_call", method="dr.stats", params={})["ok"]  # races the probe
    assert runner.hellos == 2  # one new session for both
    assert [e["event"] for e in node.events if e["event"] in ("session", "closed")] == ["session", "closed", "session"]


def test_session_reopens_after_our_reconnect_only_when_gone(node: NodeHost, runner: FakeRunner) -> None:
    node.request("session_open")
    node.request("session_room_event", name="reconnected")
    node.request("session_state")
    runner.sessions.clear()  # this time the runner saw us leave
    node.request("session_room_event", name="reconnected")
    assert node.request("session_call", method="dr.stats", params={})["ok"]  # races the probe
    assert runner.hellos == 2


# --- input mapping helpers (viewer/input.js) -------------------------------------------------------

STYLE = {"objectFit": "contain"}


def test_letterboxed_edges_map_to_0_and_1_exactly(node: NodeHost) -> None:
    # A 1000x800 element showing 1920x1080: drawn 1000x562.5, bars of 118.75 px above and below.
    box = {"left": 10, "top": 20, "width": 1000, "height": 800}
    # Reachable: x 10..1009, y 138.75..700.25 (the last pixel starts 1 px before the edge).
    points = [[10, 138.75], [1009, 700.25], [509.5, 419.5], [5, 20], [2000, 900]]
    mapped = node.request("normalize", box=box, style=STYLE, video=[1920, 1080], points=points)
    assert mapped == [[0, 0], [1, 1], [0.5, 0.5], [0, 0], [1, 1]]


def test_last_device_pixel_maps_to_1_on_hidpi(node: NodeHost) -> None:
    box = {"left": 0, "top": 0, "width": 640, "height": 360}
    mapped = node.request("normalize", box=box, style=STYLE, video=[1280, 720], points=[[639.5, 359.5]], dpr=2)
    assert mapped == [[1, 1]]


@pytest.mark.parametrize(("event", "notches"), [
    ({"deltaX": 0, "deltaY": 100, "deltaMode": 0}, {"dx": 0, "dy": 2}),
    ({"deltaX": -3, "deltaY": 0, "deltaMode": 1}, {"dx": -1, "dy": 0}),
    ({"deltaX": 0, "deltaY": 1, "deltaMode": 2}, {"dx": 0, "dy": 1}),
    ({"deltaX": 0, "deltaY": 25, "deltaMode": 0}, {"dx": 0, "dy": 0.5}),
])
def test_wheel_notches(node: NodeHost, event: dict[str, int], notches: dict[str, float]) -> None:
    assert node.request("wheel", **event) == notches


def test_text_chunks_respect_the_character_and_envelope_limits(node: NodeHost) -> None:
    ascii_chunks = node.request("textChunks", text="a" * 2500)
    assert [len(c) for c in ascii_chunks] == [1024, 1024, 452]
    emoji = "🙂" * 1500  # 4 UTF-8 bytes each: the 4096-byte envelope binds before 1024 characters
    emoji_chunks = node.request("textChunks", text=emoji)
    assert "".join(emoji_chunks) == emoji
    for chunk in emoji_chunks:
        body = json.dumps({"t": "text", "text": chunk}, ensure_ascii=False, separators=(",", ":")).encode()
        assert len(chunk) <= 1024 and env.HEADER_BYTES + len(body) + env.TAG_BYTES <= 4096
    assert node.request("textChunks", text="a\r\nb\rc") == ["a\nb\nc"]
