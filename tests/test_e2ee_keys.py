"""runner.e2ee keys: KDF vectors, ratchet, KeyRing.

Vectors marked "ParticipantKeyHandler.test.ts" are ported from livekit-client 2.23
(src/e2ee/worker/ParticipantKeyHandler.test.ts and its __snapshots__).
"""

import re

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from runner.e2ee import DecryptionError, KeyRing, derive_key, key_fingerprint, ratchet

# Expected keys were computed with WebCrypto (Node 20 crypto.subtle.deriveBits), as livekit-client
# derives them.

# ---- derive_key ---------------------------------------------------------------------------------


def test_pbkdf2_key_of_passphrase_key1() -> None:
    assert derive_key("key1") == bytes.fromhex("7adabac1db9abf018ef98fdc737f4f2f")


def test_pbkdf2_key_of_a_str_equals_that_of_its_utf8_bytes() -> None:
    assert derive_key("clé") == derive_key("clé".encode())


def test_pbkdf2_key_of_passphrase_password() -> None:
    assert derive_key("password") == bytes.fromhex("421890b1557504a8ea1a90c253b419e4")


def test_pbkdf2_256_bit_key_extends_the_128_bit_key() -> None:
    # PBKDF2 output blocks do not depend on the requested length.
    assert derive_key("key1", key_size=32)[:16] == derive_key("key1")


def test_hkdf_key_of_32_bytes_0_to_31() -> None:
    assert derive_key(bytes(range(32)), kdf="hkdf") == bytes.fromhex(
        "6d0dd7b3d6f4efde47ab9a9e15abde76"
    )


def test_hkdf_and_pbkdf2_give_different_keys() -> None:
    assert derive_key(bytes(range(32)), kdf="hkdf") != derive_key(bytes(range(32)))


def test_custom_salt_changes_the_key() -> None:
    assert derive_key("key1", salt=b"other salt") != derive_key("key1")


def test_derive_key_rejects_empty_material() -> None:
    with pytest.raises(ValueError, match="empty"):
        derive_key("")


def test_derive_key_rejects_a_24_byte_key_size() -> None:
    with pytest.raises(ValueError, match="16 or 32"):
        derive_key("key1", key_size=24)


def test_derive_key_rejects_an_unknown_kdf() -> None:
    with pytest.raises(ValueError, match="kdf"):
        derive_key("key1", kdf="scrypt")  # type: ignore[arg-type]


# ---- ratchet ------------------------------------------------------------------------------------

# ParticipantKeyHandler.test.ts "ratchets keys predictably": passphrase "password", then 9 ratchets;
# each key encrypts bytes 0..16 with a zero IV and no additional data.
RATCHET_SNAPSHOT = [
    "2ae25e3198124f0137befa508f1386dac837576675d982300b423f667390755ce8",
    "04a4784cace1110eb0ba6f050ab01d2a13d748e3cb8bdb93554e3ebfba7bf83c93",
    "3aad55a2d3c8c857d641da5c4a358fb73af21327e2b4cc7f6ddb9c98679ebaf0a1",
    "2e896b08eff8d9d66aea67226cb312ba05211f150930c2cdce8806b340967eaf84",
    "f97b56b31209952a6e701dc1d03f30760fba1b65171f6f98c1eb5919a1f6e7c67e",
    "3886c4c3f20abb7a6fb393ce4a992df4587719720b029579e3db270b0dafb6a860",
    "240c779d922a2b6b3d2bf2a60bb49427b1f8c2a6c935c0393e4625fcf39c8cb92a",
    "de7f20e463c61f9ec0655281af99702b39cff6367fa563fe04b22835425c0d4500",
    "f9b5b5a81b30ddddaebb1099909ca4e8b9ca843a4b9ce8eebf21091f972be088be",
    "3a63109794838a5ee65f265189a24e3df3cfff6d30f8d98785f8384a2971996cca",
]


def test_ratchet_chain_matches_the_livekit_client_snapshot() -> None:
    material: bytes = b"password"
    ciphertexts = []
    for _ in RATCHET_SNAPSHOT:
        key = derive_key(material)
        ciphertexts.append(AESGCM(key).encrypt(bytes(12), bytes(range(17)), b"").hex())
        material = ratchet(material)
    assert ciphertexts == RATCHET_SNAPSHOT


def test_ratchet_of_password_is_32_bytes_of_pbkdf2() -> None:
    assert ratchet("password") == bytes.fromhex(
        "421890b1557504a8ea1a90c253b419e4e1a3a43283f7115909d6fce6926e5e5f"
    )


def test_hkdf_ratchet_is_32_bytes_of_hkdf() -> None:
    assert ratchet(bytes(range(32)), kdf="hkdf") == bytes.fromhex(
        "6d0dd7b3d6f4efde47ab9a9e15abde7635c45a13bddf5da15eed01f40178d328"
    )


# ---- key_fingerprint ----------------------------------------------------------------------------


def test_fingerprint_is_prefixed_sha256_prefix() -> None:
    assert key_fingerprint(bytes.fromhex("7adabac1db9abf018ef98fdc737f4f2f")) == "keyfp:4973db74"


# ---- KeyRing ------------------------------------------------------------------------------------


def test_keyring_starts_empty_at_index_0() -> None:
    ring = KeyRing()
    assert (ring.size, ring.current_index, ring.has_key(0)) == (16, 0, False)


def test_keyring_set_key_makes_the_index_current() -> None:
    ring = KeyRing()
    ring.set_key("key1", 5)
    assert ring.current_index == 5
    assert ring.key() == ring.key(5) == derive_key("key1")


def test_keyring_set_key_can_leave_the_current_index() -> None:
    ring = KeyRing()
    ring.set_key("key1", 0)
    ring.set_key("key2", 1, make_current=False)
    assert ring.current_index == 0 and ring.key(1) == derive_key("key2")


def test_keyring_stores_an_index_modulo_its_size() -> None:
    ring = KeyRing()
    assert ring.set_key("key1", 17) == 1
    assert ring.current_index == 1 and ring.has_key(1) and not ring.has_key(17)


def test_keyring_rotate_uses_the_next_index_and_wraps() -> None:
    ring = KeyRing(size=2)
    ring.set_key("a", 1)
    assert ring.rotate("b") == 0
    assert ring.current_index == 0 and ring.key(0) == derive_key("b")


def test_keyring_ratchet_replaces_the_current_key_and_returns_the_material() -> None:
    ring = KeyRing()
    ring.set_key("key1", 2)
    material = ring.ratchet()
    assert material == ratchet("key1")
    assert ring.key(2) == derive_key(material)
    assert ring.current_index == 2


def test_keyring_ratchet_of_an_empty_slot_fails() -> None:
    with pytest.raises(LookupError):
        KeyRing().ratchet(3)


def test_keyring_with_hkdf_and_aes_256() -> None:
    ring = KeyRing(kdf="hkdf", key_size=32)
    ring.set_key(bytes(range(32)))
    assert ring.key() == derive_key(bytes(range(32)), kdf="hkdf", key_size=32)


@pytest.mark.parametrize("size", [0, 257])
def test_keyring_size_must_be_1_to_256(size: int) -> None:
    with pytest.raises(ValueError, match=r"1\.\.256"):
        KeyRing(size=size)


def test_keyring_fingerprint_names_the_current_key() -> None:
    ring = KeyRing()
    ring.set_key("key1")
    assert ring.fingerprint() == "keyfp:4973db74"


def test_keyring_repr_shows_fingerprints_not_keys_or_material() -> None:
    ring = KeyRing()
    ring.set_key("a secret passphrase", 3)
    text = repr(ring)
    assert text == (
        "KeyRing(size=16, kdf='pbkdf2', key_size=16, current_index=3,"
        f" keys={{3: '{ring.fingerprint()}'}})"
    )
    assert ring.key().hex() not in text and "secret" not in text
    assert not re.search(r"[0-9a-f]{16}", text)


def test_keyring_decrypt_of_a_frame_with_a_missing_key_index() -> None:
    ring = KeyRing()
    ring.set_key("key1", 0)
    frame = bytes(40) + b"\x0c\x07"
    with pytest.raises(DecryptionError, match="no key at index 7"):
        ring.decrypt_frame(frame, codec="vp8")


def test_keyring_decrypt_does_not_wrap_a_key_index_beyond_the_ring() -> None:
    ring = KeyRing()
    ring.set_key("key1", 1)
    frame = ring.encrypt_frame(b"\x10" * 20, codec="vp8")
    with pytest.raises(DecryptionError, match="no key at index 17"):
        ring.decrypt_frame(frame[:-1] + bytes([17]), codec="vp8")


def test_keyring_encrypt_without_a_key_says_what_to_do() -> None:
    with pytest.raises(LookupError, match="set_key"):
        KeyRing().encrypt_frame(b"\x10" * 20, codec="vp8")
