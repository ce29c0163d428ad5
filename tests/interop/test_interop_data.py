"""Data packets: runner.e2ee against the worker's DataCryptor and RTCEngine's data path.

JS -> Python: the packet goes through what RTCEngine.sendDataPacket does with data channel
encryption on (EncryptedPacketPayload, 'encryptDataRequest' to the worker, EncryptedPacket).
Python -> JS: the packet goes through RTCEngine's receive path ('decryptDataRequest', then a
DataPacket rebuilt from the payload and the envelope's participant identity and sid).
"""

from __future__ import annotations

from typing import Any

import pytest
from livekit.protocol.models import (
    ActiveSpeakerUpdate,
    ChatMessage,
    DataPacket,
    DataStream,
    Encryption,
    RpcAck,
    RpcError,
    RpcRequest,
    RpcResponse,
    SpeakerInfo,
    Transcription,
    UserPacket,
)

from runner.e2ee import (
    DecryptionError,
    KeyRing,
    decrypt_data_packet,
    derive_key,
    encrypt_data_packet,
    ratchet,
)

from .worker_host import SENDER, WorkerHost

pytestmark = pytest.mark.integration

PASSPHRASE = b"data channel passphrase"
KEY = derive_key(PASSPHRASE)


def envelope(**value: Any) -> DataPacket:
    """A packet as a viewer sends it to the runner, with the sender fields the SFU fills in."""
    return DataPacket(
        kind=DataPacket.Kind.RELIABLE,
        participant_identity=SENDER,
        participant_sid="PA_runner",
        destination_identities=["viewer-1"],
        **value,
    )


PACKETS = {
    "user": envelope(
        user=UserPacket(payload=b"\x00\x01 binary \xff", topic="clipboard", id="u-1", nonce=b"n1")
    ),
    "chat_message": envelope(
        chat_message=ChatMessage(id="c-1", timestamp=1_763_800_000_000, message="hello runner")
    ),
    "rpc_request": envelope(
        rpc_request=RpcRequest(
            id="r-1", method="input.key", payload='{"key":"a","down":true}',
            response_timeout_ms=10_000, version=1,
        )
    ),
    "rpc_ack": envelope(rpc_ack=RpcAck(request_id="r-1")),
    "rpc_response": envelope(rpc_response=RpcResponse(request_id="r-1", payload='{"ok":true}')),
    "rpc_error_response": envelope(
        rpc_response=RpcResponse(
            request_id="r-2", error=RpcError(code=1500, message="denied", data="input locked")
        )
    ),
    "stream_header": envelope(
        stream_header=DataStream.Header(
            stream_id="s-1", timestamp=1_763_800_000_123, topic="lk.chat", mime_type="text/plain",
            total_length=11, attributes={"origin": "viewer"},
            text_header=DataStream.TextHeader(operation_type=DataStream.OperationType.CREATE),
        )
    ),
    "stream_chunk": envelope(
        stream_chunk=DataStream.Chunk(stream_id="s-1", chunk_index=0, content=b"hello world")
    ),
    "stream_trailer": envelope(
        stream_trailer=DataStream.Trailer(stream_id="s-1", reason="", attributes={"done": "1"})
    ),
}


def as_received(packet: DataPacket) -> DataPacket:
    """What a receiver emits for ``packet``: its value plus the envelope's sender fields."""
    received = DataPacket(
        participant_identity=packet.participant_identity, participant_sid=packet.participant_sid
    )
    kind = packet.WhichOneof("value")
    getattr(received, kind).CopyFrom(getattr(packet, kind))
    return received


@pytest.fixture
def keyed(js: WorkerHost) -> WorkerHost:
    js.set_key(PASSPHRASE)
    return js


@pytest.mark.parametrize("name", PACKETS)
def test_python_encrypts_js_decrypts(keyed: WorkerHost, name: str) -> None:
    packet = PACKETS[name]
    wire = encrypt_data_packet(packet, KEY)
    assert keyed.decrypt_data(wire.SerializeToString()) == as_received(packet)


@pytest.mark.parametrize("name", PACKETS)
def test_js_encrypts_python_decrypts(keyed: WorkerHost, name: str) -> None:
    packet = PACKETS[name]
    wire = keyed.encrypt_data(packet)
    assert wire.WhichOneof("value") == "encrypted_packet"
    assert decrypt_data_packet(wire.SerializeToString(), KEY) == as_received(packet)


def test_js_and_python_envelopes_carry_the_same_clear_fields(keyed: WorkerHost) -> None:
    packet = PACKETS["rpc_request"]
    from_js = keyed.encrypt_data(packet)
    from_python = encrypt_data_packet(packet, KEY)
    for wire in (from_js, from_python):
        assert wire.kind == packet.kind
        assert wire.participant_identity == packet.participant_identity
        assert wire.participant_sid == packet.participant_sid
        assert list(wire.destination_identities) == list(packet.destination_identities)
        assert len(wire.encrypted_packet.iv) == 12
        assert wire.encrypted_packet.key_index == 0
        assert len(wire.encrypted_packet.encrypted_value) == (
            len(as_received(packet).rpc_request.SerializeToString()) + 2 + 16
        )
    assert from_js.encrypted_packet.encryption_type == Encryption.Type.NONE  # JS leaves it unset
    assert from_python.encrypted_packet.encryption_type == Encryption.Type.GCM


@pytest.mark.parametrize(
    "packet",
    [
        DataPacket(speaker=ActiveSpeakerUpdate(speakers=[SpeakerInfo(sid="PA_1", level=0.5)])),
        DataPacket(transcription=Transcription(transcribed_participant_identity="viewer-1")),
    ],
    ids=["speaker", "transcription"],
)
def test_kinds_js_sends_in_clear_are_refused_by_encrypt(keyed: WorkerHost, packet: DataPacket) -> None:
    assert keyed.encrypt_data(packet) == packet
    with pytest.raises(ValueError, match="not end-to-end encrypted"):
        encrypt_data_packet(packet, KEY)


def test_key_index_3_both_ways(js: WorkerHost) -> None:
    js.set_key(PASSPHRASE, key_index=3)
    ring = KeyRing()
    ring.set_key(PASSPHRASE, 3)
    packet = PACKETS["user"]
    from_js = js.encrypt_data(packet)
    assert from_js.encrypted_packet.key_index == 3
    assert ring.decrypt_data_packet(from_js) == as_received(packet)
    from_python = ring.encrypt_data_packet(packet)
    assert from_python.encrypted_packet.key_index == 3
    assert js.decrypt_data(from_python) == as_received(packet)


def test_hkdf_key(js: WorkerHost) -> None:
    material = bytes(range(32))
    js.set_key(material, kdf="hkdf")
    packet = PACKETS["chat_message"]
    key = derive_key(material, kdf="hkdf")
    assert js.decrypt_data(encrypt_data_packet(packet, key)) == as_received(packet)
    assert decrypt_data_packet(js.encrypt_data(packet), key) == as_received(packet)


def test_js_rejects_a_tampered_python_packet(keyed: WorkerHost) -> None:
    wire = encrypt_data_packet(PACKETS["rpc_request"], KEY)
    value = bytearray(wire.encrypted_packet.encrypted_value)
    value[5] ^= 0x40
    wire.encrypted_packet.encrypted_value = bytes(value)
    assert isinstance(keyed.decrypt_data(wire), str)


def test_js_rejects_a_python_packet_under_another_key(keyed: WorkerHost) -> None:
    wire = encrypt_data_packet(PACKETS["rpc_request"], derive_key(b"another key"))
    assert isinstance(keyed.decrypt_data(wire), str)


def test_python_rejects_a_tampered_js_packet(keyed: WorkerHost) -> None:
    wire = keyed.encrypt_data(PACKETS["rpc_request"])
    iv = bytearray(wire.encrypted_packet.iv)
    iv[0] ^= 0x01
    wire.encrypted_packet.iv = bytes(iv)
    with pytest.raises(DecryptionError):
        decrypt_data_packet(wire, KEY)


def test_ratcheting_receiver_never_tries_a_ratcheted_key_on_data(worker_host: WorkerHost) -> None:
    # Trap: DataCryptor.decrypt retries with ratcheted keys but always decrypts with the stored
    # one, so data packets under a ratcheted key are lost until the receiver's key is updated.
    worker_host.reset(sharedKey=False, ratchetWindowSize=8, failureTolerance=10)
    worker_host.set_key(PASSPHRASE, participant=SENDER)
    packet = PACKETS["user"]
    ratcheted = encrypt_data_packet(packet, derive_key(ratchet(PASSPHRASE)))
    assert isinstance(worker_host.decrypt_data(ratcheted), str)
    assert worker_host.decrypt_data(encrypt_data_packet(packet, KEY)) == as_received(packet)
