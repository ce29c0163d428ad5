"""The control envelope (docs/protocol.md): published vectors, tampering, replay window."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.control import envelope as env

ROOT = Path(__file__).resolve().parent.parent
VECTORS = json.loads((ROOT / "tests" / "vectors" / "control_envelope.json").read_text(encoding="utf-8"))
KEY = bytes(range(32))


def test_vector_file_is_what_the_generator_writes() -> None:
    import gen_control_vectors

    written = (ROOT / "tests" / "vectors" / "control_envelope.json").read_text(encoding="utf-8")
    assert gen_control_vectors.render() == written


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_vector_seals_byte_for_byte_and_opens(vector: dict[str, Any]) -> None:
    key = env.derive_control_key(vector["passphrase"])
    assert key.hex() == vector["key_hex"]
    sealed = env.seal(
        key, kind=vector["kind"], key_index=vector["key_index"], session=int(vector["session"]),
        seq=int(vector["seq"]), sender=vector["sender"], recipient=vector["recipient"],
        context=vector["context"], body=vector["body_utf8"].encode(), nonce=bytes.fromhex(vector["nonce_hex"]),
    )
    assert sealed.hex() == vector["envelope_hex"]
    opened = env.open_envelope(key, sealed, sender=vector["sender"], recipient=vector["recipient"],
                               context=vector["context"])
    assert opened.body.decode() == vector["body_utf8"]
    assert (opened.header.kind, opened.header.key_index, opened.header.session, opened.header.seq) == (
        vector["kind"], vector["key_index"], int(vector["session"]), int(vector["seq"]))


@pytest.mark.parametrize("bad", VECTORS["bad"], ids=lambda v: v["name"])
def test_bad_vector_does_not_open(bad: dict[str, Any]) -> None:
    with pytest.raises(env.EnvelopeError) as caught:
        env.open_envelope(bytes.fromhex(bad["key_hex"]), bytes.fromhex(bad["envelope_hex"]),
                          sender=bad["sender"], recipient=bad["recipient"], context=bad["context"])
    assert caught.value.reason == "auth"


def test_error_message_never_contains_the_body() -> None:
    sealed = env.seal(KEY, kind=1, key_index=0, session=5, seq=1, sender="a", recipient="b",
                      context=env.DATA_CONTEXT, body=b'{"t":"text","text":"hunter2"}')
    with pytest.raises(env.EnvelopeError) as caught:
        env.open_envelope(KEY, sealed, sender="mallory", recipient="b", context=env.DATA_CONTEXT)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("header, reason", [
    (bytes([2, 1, 0, 0]) + bytes(28), "envelope version 2"),
    (bytes([1, 9, 0, 0]) + bytes(28), "malformed"),
    (bytes([1, 1, 0, 7]) + bytes(28), "malformed"),
    (bytes([1, 1, 0, 0]) + bytes(16) + bytes(12), "malformed"),  # sequence number 0
])
def test_malformed_headers_are_refused_before_decryption(header: bytes, reason: str) -> None:
    with pytest.raises(env.EnvelopeError, match=reason):
        env.parse_header(header + bytes(16))


def test_seal_refuses_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match="out of range"):
        env.seal(KEY, kind=1, key_index=0, session=1, seq=0, sender="a", recipient="b", context="c", body=b"")
    with pytest.raises(ValueError, match="unknown envelope kind 7"):
        env.seal(KEY, kind=7, key_index=0, session=1, seq=1, sender="a", recipient="b", context="c", body=b"")


def test_replay_window_rejects_duplicates_and_old_numbers_accepts_reordering() -> None:
    w = env.ReplayWindow()
    assert w.accept(1) and w.accept(3) and w.accept(2)
    assert not w.accept(2) and not w.accept(3)
    assert w.accept(100)
    assert w.accept(37)  # 63 behind: inside the window
    assert not w.accept(36)  # 64 behind: outside
    assert not w.accept(37)
    assert w.accept(200) and not w.accept(100)  # the window moved on past 100


def test_check_does_not_record() -> None:
    w = env.ReplayWindow()
    assert w.check(5) and w.check(5)
    assert w.accept(5) and not w.check(5)


@given(st.lists(st.integers(min_value=1, max_value=300), max_size=200))
def test_replay_window_accepts_each_number_at_most_once(seqs: list[int]) -> None:
    w = env.ReplayWindow()
    accepted: list[int] = []
    highest = 0
    for s in seqs:
        if w.accept(s):
            accepted.append(s)
            assert s > highest - env.REPLAY_WINDOW  # never 64 or more behind the highest before it
        highest = max(highest, s)
    assert len(accepted) == len(set(accepted))
