"""Write tests/vectors/control_envelope.json: control envelope test vectors (docs/protocol.md).

Deterministic (fixed nonces), so re-running it reproduces the file byte for byte; the tests check
that, and that every vector opens and every bad case fails.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.control import envelope as env
from runner.control import messages as msg

OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "control_envelope.json"

CASES: list[dict[str, Any]] = [
    dict(name="hello request", passphrase="correct horse battery staple", kind=env.KIND_RPC_REQUEST,
         key_index=0, session=0, seq=1, sender="viewer-1", recipient="desktop-runner", context="dr.hello",
         body={"nonce": "AAECAwQFBgcICQoLDA0ODw==", "client": "vectors"}),
    dict(name="hello response", passphrase="correct horse battery staple", kind=env.KIND_RPC_RESPONSE,
         key_index=0, session=0x0123456789ABCDEF, seq=1, sender="desktop-runner", recipient="viewer-1",
         context="dr.hello#1", body={"ok": True, "result": {"session": "0123456789abcdef"}}),
    dict(name="key input", passphrase="correct horse battery staple", kind=env.KIND_INPUT, key_index=3,
         session=0x0123456789ABCDEF, seq=2, sender="viewer-1", recipient="desktop-runner",
         context=env.DATA_CONTEXT, body={"t": "key", "code": "KeyQ", "key": "@", "down": True, "mods": ["AltGraph"]}),
    dict(name="monitors push, unicode identities", passphrase="pässwörd 🔑", kind=env.KIND_PUSH, key_index=15,
         session=2**64 - 1, seq=2**64 - 1, sender="ранер", recipient="観る人", context=env.DATA_CONTEXT,
         body={"t": "control", "controller": None, "you": False}),
    dict(name="key input, protocol 2: ordinal and padding", passphrase="correct horse battery staple",
         kind=env.KIND_INPUT, key_index=0, session=0x0123456789ABCDEF, seq=3, sender="viewer-1",
         recipient="desktop-runner", context=env.DATA_CONTEXT,
         body=msg.encode_input({"t": "key", "code": "Enter", "key": "Enter", "down": True, "mods": []}, 1)),
]


PADDING_CASES: list[tuple[dict[str, object], int | None]] = [
    ({"t": "key", "code": "KeyA", "key": "a", "down": True, "mods": []}, 1),
    ({"t": "key", "code": "Enter", "key": "Enter", "down": False, "mods": ["Shift"]}, 2),
    ({"t": "move", "mon": "screen", "x": 0.5, "y": 0.25}, None),
    ({"t": "held", "keys": [f"Key{c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"], "buttons": ["left"]}, 3),
    ({"t": "text", "text": "Grüße, 世界! " * 40}, 4),
]


def _body(obj: object) -> bytes:
    if isinstance(obj, bytes):
        return obj  # already the wire body (input: numbered and padded)
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def build() -> dict[str, Any]:
    vectors = []
    for i, case in enumerate(CASES):
        key = env.derive_control_key(case["passphrase"])
        nonce = bytes(range(i * 16, i * 16 + env.NONCE_BYTES))
        body = _body(case["body"])
        sealed = env.seal(key, kind=case["kind"], key_index=case["key_index"], session=case["session"],
                          seq=case["seq"], sender=case["sender"], recipient=case["recipient"],
                          context=case["context"], body=body, nonce=nonce)
        vectors.append({
            "name": case["name"], "passphrase": case["passphrase"], "key_hex": key.hex(),
            "kind": case["kind"], "key_index": case["key_index"], "session": str(case["session"]),
            "seq": str(case["seq"]), "sender": case["sender"], "recipient": case["recipient"],
            "context": case["context"], "nonce_hex": nonce.hex(), "body_utf8": body.decode(),
            "envelope_hex": sealed.hex(), "envelope_base64": base64.b64encode(sealed).decode(),
        })
    first = vectors[2]  # "key input"
    sealed = bytes.fromhex(first["envelope_hex"])
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    other_index = bytearray(sealed)
    other_index[2] = 4
    bad: list[dict[str, Any]] = [
        {"name": "flipped tag bit", "envelope_hex": bytes(flipped).hex()},
        {"name": "key index changed", "envelope_hex": bytes(other_index).hex()},
        {"name": "truncated", "envelope_hex": sealed[:40].hex()},
        {"name": "wrong sender", "sender": "viewer-2"},
        {"name": "wrong recipient", "recipient": "other-runner"},
        {"name": "wrong context", "context": "dr.stats"},
        {"name": "wrong passphrase", "key_hex": env.derive_control_key("wrong").hex()},
    ]
    for case in bad:
        case.setdefault("envelope_hex", first["envelope_hex"])
        for field in ("key_hex", "sender", "recipient", "context"):
            case.setdefault(field, first[field])
    return {
        "description": "desktop-runner control envelope v1, control protocol 2 (docs/protocol.md). session "
                       "and seq are decimal strings (64-bit). Every 'vectors' entry must seal to envelope_hex "
                       "with the given nonce and open back to body_utf8; every 'bad' entry must fail to open. "
                       "'input_padding' gives input messages as a protocol 2 viewer encodes them: with the "
                       "ordinal o for reliable kinds, padded with spaces to 256, 1024 or 4048 bytes.",
        "vectors": vectors,
        "bad": bad,
        "input_padding": [
            {"message": m, "o": o, "body_utf8": msg.encode_input(m, o).decode()} for m, o in PADDING_CASES
        ],
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")
