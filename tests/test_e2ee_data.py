"""runner.e2ee data packets: envelope, payload, refusals."""

from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from livekit.protocol.models import (
    ChatMessage,
    DataPacket,
    EncryptedPacket,
    EncryptedPacketPayload,
    Encryption,
    RpcRequest,
    SipDTMF,
    UserPacket,
)

from runner.e2ee import (
    ENCRYPTED_PACKET_KINDS,
    DecryptionError,
    KeyRing,
    decrypt_data_packet,
    derive_key,
    encrypt_data_packet,
)

KEY = derive_key("key1")
IV = bytes.fromhex("00112233445566778899aabb")
RPC = DataPacket(
    kind=DataPacket.Kind.RELIABLE,
    participant_identity="viewer-1",
    participant_sid="PA_viewer",
    destination_identities=["runner"],
    sequence=42,
    rpc_request=RpcRequest(id="r-1", method="input.key", payload='{"key":"a"}', version=1),
)


def sealed(plaintext: bytes, key: bytes = KEY, **envelope: Any) -> DataPacket:
    """An encrypted packet built by hand: AES-GCM of ``plaintext`` with no additional data."""
    return DataPacket(
        participant_identity="viewer-1",
        encrypted_packet=EncryptedPacket(
            iv=IV, key_index=0, encrypted_value=AESGCM(key).encrypt(IV, plaintext, None)
        ),
        **envelope,
    )


def test_encrypted_kinds_are_those_livekit_client_encrypts() -> None:
    assert ENCRYPTED_PACKET_KINDS == (
        "user", "chat_message", "rpc_request", "rpc_ack", "rpc_response",
        "stream_header", "stream_chunk", "stream_trailer",
    )


def test_encrypt_keeps_the_envelope_and_hides_the_value() -> None:
    wire = encrypt_data_packet(RPC, KEY, key_index=4)
    assert wire.WhichOneof("value") == "encrypted_packet"
    assert (wire.kind, wire.participant_identity, wire.participant_sid, wire.sequence) == (
        DataPacket.Kind.RELIABLE, "viewer-1", "PA_viewer", 42,
    )
    assert list(wire.destination_identities) == ["runner"]
    assert wire.encrypted_packet.encryption_type == Encryption.Type.GCM
    assert wire.encrypted_packet.key_index == 4
    assert len(wire.encrypted_packet.iv) == 12
    assert b"input.key" not in wire.SerializeToString()


def test_encrypted_value_is_gcm_of_the_payload_message_without_additional_data() -> None:
    wire = encrypt_data_packet(RPC, KEY)
    envelope = wire.encrypted_packet
    payload = AESGCM(KEY).decrypt(envelope.iv, envelope.encrypted_value, None)
    assert payload == EncryptedPacketPayload(rpc_request=RPC.rpc_request).SerializeToString()
    assert payload[0] == (4 << 3) | 2  # EncryptedPacketPayload.rpc_request is field 4


def test_decrypt_gives_the_value_and_the_sender_fields_only() -> None:
    decrypted = decrypt_data_packet(encrypt_data_packet(RPC, KEY), KEY)
    assert decrypted == DataPacket(
        participant_identity="viewer-1", participant_sid="PA_viewer", rpc_request=RPC.rpc_request
    )


def test_decrypt_accepts_wire_bytes() -> None:
    wire = encrypt_data_packet(RPC, KEY).SerializeToString()
    assert decrypt_data_packet(wire, KEY).rpc_request == RPC.rpc_request


def test_decrypt_of_a_hand_sealed_chat_message() -> None:
    payload = EncryptedPacketPayload(chat_message=ChatMessage(id="c", message="hi"))
    decrypted = decrypt_data_packet(sealed(payload.SerializeToString()), KEY)
    assert decrypted.chat_message.message == "hi"


def test_encrypt_refuses_a_kind_sent_in_clear() -> None:
    with pytest.raises(ValueError, match="sip_dtmf is not end-to-end encrypted"):
        encrypt_data_packet(DataPacket(sip_dtmf=SipDTMF(code=1, digit="1")), KEY)


def test_encrypt_refuses_an_empty_packet() -> None:
    with pytest.raises(ValueError, match="None is not end-to-end encrypted"):
        encrypt_data_packet(DataPacket(participant_identity="x"), KEY)


def test_encrypt_refuses_an_already_encrypted_packet() -> None:
    with pytest.raises(ValueError, match="encrypted_packet"):
        encrypt_data_packet(encrypt_data_packet(RPC, KEY), KEY)


def test_decrypt_refuses_a_plaintext_packet() -> None:
    with pytest.raises(DecryptionError, match=r"not encrypted \(DataPacket.rpc_request\)"):
        decrypt_data_packet(RPC, KEY)


def test_decrypt_refuses_the_wrong_key() -> None:
    with pytest.raises(DecryptionError, match="authentication"):
        decrypt_data_packet(encrypt_data_packet(RPC, KEY), derive_key("key2"))


def test_decrypt_refuses_an_iv_that_is_not_12_bytes() -> None:
    wire = encrypt_data_packet(RPC, KEY)
    wire.encrypted_packet.iv = wire.encrypted_packet.iv[:8]
    with pytest.raises(DecryptionError, match="IV is 8 bytes"):
        decrypt_data_packet(wire, KEY)


def test_decrypt_refuses_a_value_shorter_than_the_tag() -> None:
    wire = encrypt_data_packet(RPC, KEY)
    wire.encrypted_packet.encrypted_value = b"\x01" * 15
    with pytest.raises(DecryptionError, match="shorter than the GCM tag"):
        decrypt_data_packet(wire, KEY)


def test_decrypt_refuses_an_authentic_payload_that_is_not_protobuf() -> None:
    with pytest.raises(DecryptionError, match="not an EncryptedPacketPayload"):
        decrypt_data_packet(sealed(b"\xff\xff\xff"), KEY)


def test_decrypt_refuses_an_authentic_empty_payload() -> None:
    with pytest.raises(DecryptionError, match="no known value"):
        decrypt_data_packet(sealed(b""), KEY)


def test_decrypt_refuses_bytes_that_are_not_a_data_packet() -> None:
    with pytest.raises(DecryptionError, match="not a DataPacket"):
        decrypt_data_packet(b"\x0a\xff", KEY)


def test_keyring_uses_the_packet_key_index() -> None:
    ring = KeyRing()
    ring.set_key("old", 0)
    ring.set_key("new", 1)
    packet = DataPacket(user=UserPacket(payload=b"x"))
    old = encrypt_data_packet(packet, derive_key("old"), key_index=0)
    assert ring.decrypt_data_packet(old).user.payload == b"x"
    assert ring.encrypt_data_packet(packet).encrypted_packet.key_index == 1


def test_keyring_refuses_a_packet_whose_index_has_no_key() -> None:
    ring = KeyRing()
    ring.set_key("old", 0)
    wire = encrypt_data_packet(RPC, KEY, key_index=9)
    with pytest.raises(DecryptionError, match="no key at index 9"):
        ring.decrypt_data_packet(wire.SerializeToString())


# ---- behaviours from livekit-client's DataCryptor.test.ts (it pins no bytes: its IVs are random) --


def test_encrypt_without_a_key_set_fails() -> None:
    with pytest.raises(LookupError, match="no key"):
        KeyRing().encrypt_data_packet(RPC)


def test_each_encryption_uses_a_different_iv() -> None:
    first, second = (encrypt_data_packet(RPC, KEY).encrypted_packet for _ in range(2))
    assert first.iv != second.iv and first.encrypted_value != second.encrypted_value


def test_encrypt_uses_the_current_key_index() -> None:
    ring = KeyRing()
    ring.set_key("test-key", 5)
    assert ring.encrypt_data_packet(RPC).encrypted_packet.key_index == 5


def test_decrypt_without_a_key_at_the_index_fails() -> None:
    wire = encrypt_data_packet(RPC, KEY, key_index=1)
    with pytest.raises(DecryptionError, match="no key at index 1"):
        KeyRing().decrypt_data_packet(wire)
