"""Keys: PBKDF2 and HKDF material, AES-256, key indexes and ratchets, checked against the worker.

The worker never exports a key, so keys are compared by what they do: a frame encrypted under the
Python key must decrypt in JS and the other way round. Ratchets are also compared byte for byte:
the worker announces the new chain key ('ratchetKey') for per-participant keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from runner.e2ee import KeyRing, decrypt_frame, derive_key, encrypt_frame, frame_key_index, ratchet

from .worker_host import SENDER, JsFrame, WorkerHost, kept

if TYPE_CHECKING:
    from runner.e2ee import Kdf

pytestmark = pytest.mark.integration

PASSPHRASE = b"interop passphrase"
RANDOM_MATERIAL = bytes.fromhex("9f1c2e3d4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0")


def round_trips(js: WorkerHost, au: bytes, key: bytes, *, key_index: int = 0,
                participant: str = SENDER) -> None:
    """Python -> JS and JS -> Python with ``key`` on the Python side; asserts both."""
    encrypted = encrypt_frame(au, key, codec="h264", key_index=key_index, keyframe=True)
    assert js.decode([JsFrame(encrypted, "h264", True)], participant=participant) == [au]
    from_js = js.encode([JsFrame(au, "h264", True)], participant=participant)[0]
    assert from_js is not None, "the worker dropped the frame (no key at its current index?)"
    assert frame_key_index(from_js) == key_index
    assert decrypt_frame(from_js, key, codec="h264", keyframe=True) == au


@pytest.fixture
def idr(x264_units: list[tuple[bytes, bool]]) -> bytes:
    from runner.bitstream.annexb import normalize_start_codes

    return normalize_start_codes(x264_units[0][0])


def test_pbkdf2_passphrase(js: WorkerHost, idr: bytes) -> None:
    js.set_key(PASSPHRASE)
    round_trips(js, idr, derive_key(PASSPHRASE))


def test_hkdf_random_material(js: WorkerHost, idr: bytes) -> None:
    js.set_key(RANDOM_MATERIAL, kdf="hkdf")
    round_trips(js, idr, derive_key(RANDOM_MATERIAL, kdf="hkdf"))


def test_hkdf_and_pbkdf2_keys_differ(js: WorkerHost, idr: bytes) -> None:
    js.set_key(RANDOM_MATERIAL, kdf="hkdf")
    encrypted = encrypt_frame(idr, derive_key(RANDOM_MATERIAL), codec="h264", keyframe=True)
    assert js.decode([JsFrame(encrypted, "h264", True)]) == [None]


@pytest.mark.parametrize("kdf", ["pbkdf2", "hkdf"])
def test_aes_256_keys(worker_host: WorkerHost, idr: bytes, kdf: Kdf) -> None:
    worker_host.reset(keySize=256)
    worker_host.enable(SENDER)
    worker_host.set_key(RANDOM_MATERIAL, kdf=kdf)
    round_trips(worker_host, idr, derive_key(RANDOM_MATERIAL, kdf=kdf, key_size=32))


def test_custom_ratchet_salt(worker_host: WorkerHost, idr: bytes) -> None:
    worker_host.reset(ratchetSalt="desktop-runner salt")
    worker_host.enable(SENDER)
    worker_host.set_key(PASSPHRASE)
    round_trips(worker_host, idr, derive_key(PASSPHRASE, salt=b"desktop-runner salt"))


def test_key_index_5(js: WorkerHost, idr: bytes) -> None:
    js.set_key(PASSPHRASE, key_index=5)
    round_trips(js, idr, derive_key(PASSPHRASE), key_index=5)


def test_key_index_beyond_the_ring_is_stored_modulo_its_size(js: WorkerHost, idr: bytes) -> None:
    js.set_key(PASSPHRASE, key_index=17)  # ring of 16: slot 1, frames carry index 1
    ring = KeyRing()
    assert ring.set_key(PASSPHRASE, 17) == 1
    from_js = kept(js.encode([JsFrame(idr, "h264", True)]))[0]
    assert frame_key_index(from_js) == 1
    assert ring.decrypt_frame(from_js, codec="h264", keyframe=True) == idr
    from_python = ring.encrypt_frame(idr, codec="h264", keyframe=True)
    assert js.decode([JsFrame(from_python, "h264", True)]) == [idr]


def test_two_keys_in_the_ring_frames_pick_theirs_by_index(js: WorkerHost, idr: bytes) -> None:
    js.set_key(b"old key", key_index=0)
    js.set_key(b"new key", key_index=1)  # current
    old = encrypt_frame(idr, derive_key(b"old key"), codec="h264", key_index=0, keyframe=True)
    new = encrypt_frame(idr, derive_key(b"new key"), codec="h264", key_index=1, keyframe=True)
    assert js.decode([JsFrame(old, "h264", True), JsFrame(new, "h264", True)]) == [idr, idr]
    ring = KeyRing()
    ring.set_key(b"old key", 0)
    ring.set_key(b"new key", 1)
    from_js = kept(js.encode([JsFrame(idr, "h264", True)]))[0]
    assert frame_key_index(from_js) == 1
    assert ring.decrypt_frame(from_js, codec="h264", keyframe=True) == idr


@pytest.mark.parametrize("kdf, material", [("pbkdf2", PASSPHRASE), ("hkdf", RANDOM_MATERIAL)])
def test_ratchet_matches_the_worker_chain_key(
        worker_host: WorkerHost, idr: bytes, kdf: Kdf, material: bytes
) -> None:
    worker_host.reset(sharedKey=False)
    worker_host.enable(SENDER)
    worker_host.set_key(material, kdf=kdf, participant=SENDER)
    first = worker_host.ratchet(SENDER)
    second = worker_host.ratchet(SENDER)
    assert first == ratchet(material, kdf=kdf)
    assert second == ratchet(first, kdf=kdf)
    round_trips(worker_host, idr, derive_key(second, kdf=kdf))


def test_keyring_ratchet_matches_the_worker(worker_host: WorkerHost, idr: bytes) -> None:
    worker_host.reset(sharedKey=False)
    worker_host.enable(SENDER)
    worker_host.set_key(PASSPHRASE, key_index=3, participant=SENDER)
    ring = KeyRing()
    ring.set_key(PASSPHRASE, 3)
    assert ring.ratchet() == worker_host.ratchet(SENDER, key_index=3)
    round_trips(worker_host, idr, ring.key(3), key_index=3)


def ratcheting_receiver(worker_host: WorkerHost) -> WorkerHost:
    """A JS receiver with ratchetWindowSize 8: it ratchets its key on a decryption failure."""
    worker_host.reset(sharedKey=False, ratchetWindowSize=8, failureTolerance=10)
    worker_host.enable(SENDER)
    worker_host.set_key(PASSPHRASE, participant=SENDER)
    return worker_host


def test_ratcheting_receiver_follows_a_sender_one_ratchet_at_a_time(worker_host: WorkerHost, idr: bytes) -> None:
    receiver = ratcheting_receiver(worker_host)
    material = PASSPHRASE
    for _ in range(3):
        material = ratchet(material)
        encrypted = encrypt_frame(idr, derive_key(material), codec="h264", keyframe=True)
        assert receiver.decode([JsFrame(encrypted, "h264", True)]) == [idr]


def test_ratcheting_receiver_cannot_skip_two_ratchets(worker_host: WorkerHost, idr: bytes) -> None:
    # Trap: every retry ratchets the stored key again, not the last attempt's key, so the
    # "ratchet window" of 8 only ever tries the next key.
    receiver = ratcheting_receiver(worker_host)
    twice = ratchet(ratchet(PASSPHRASE))
    encrypted = encrypt_frame(idr, derive_key(twice), codec="h264", keyframe=True)
    assert receiver.decode([JsFrame(encrypted, "h264", True)]) == [None]
