"""LiveKit E2EE data packets (livekit-client's DataCryptor / RTCEngine data path).

With data channel encryption on, livekit-client replaces the payload of a ``DataPacket`` by an
``EncryptedPacket``::

    DataPacket{ kind, participant_identity, participant_sid, destination_identities, sequence,
                encrypted_packet = EncryptedPacket{ encryption_type, iv (12), key_index,
                                                    encrypted_value } }
    encrypted_value = AES-GCM(key, iv, EncryptedPacketPayload, no additional data)

Everything but ``encrypted_value`` travels in clear.

``EncryptedPacketPayload`` carries the original oneof value under its own field numbers (user 1,
chat_message 3, rpc_request 4, rpc_ack 5, rpc_response 6, stream_header 7, stream_chunk 8,
stream_trailer 9). The GCM has no additional data: nothing outside ``encrypted_value`` is
authenticated, in particular not the sender identity, which the SFU fills in.

Speaker updates, SIP DTMF, transcriptions and metrics are never encrypted by livekit-client.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from livekit.protocol.models import DataPacket, EncryptedPacket, EncryptedPacketPayload, Encryption

from ._aead import GCM_TAG_LENGTH, IV_LENGTH, cipher
from .errors import DecryptionError

ENCRYPTED_PACKET_KINDS = (
    "user",
    "chat_message",
    "rpc_request",
    "rpc_ack",
    "rpc_response",
    "stream_header",
    "stream_chunk",
    "stream_trailer",
)
"""``DataPacket.value`` cases sent as ``encrypted_packet`` (same field names in the payload)."""
MAX_KEY_INDEX = 0xFFFF_FFFF


def encrypt_data_packet(packet: DataPacket, key: bytes, *, key_index: int = 0) -> DataPacket:
    """A copy of ``packet`` whose value is replaced by an ``encrypted_packet`` for livekit-client.

    ``key`` is the raw AES key (the same key as for media); ``key_index`` tells the receiver which
    key of its ring to use. Envelope fields (``kind``, ``participant_identity``,
    ``participant_sid``, ``destination_identities``, ``sequence``) are copied unchanged and stay in
    clear. ``encryption_type`` is set to GCM (the Rust SDK does the same; JS leaves 0, and neither
    reads it on receipt). Raises ValueError when ``packet`` carries a kind livekit-client sends in
    clear (see ENCRYPTED_PACKET_KINDS) or nothing at all.
    """
    kind = packet.WhichOneof("value")
    if kind not in ENCRYPTED_PACKET_KINDS:
        raise ValueError(
            f"DataPacket.{kind} is not end-to-end encrypted by LiveKit;"
            f" only {', '.join(ENCRYPTED_PACKET_KINDS)} are"
        )
    if not 0 <= key_index <= MAX_KEY_INDEX:
        raise ValueError(f"key_index must fit in uint32, got {key_index}")
    aead = cipher(key)
    payload = EncryptedPacketPayload()
    getattr(payload, kind).CopyFrom(getattr(packet, kind))
    # Random 96-bit IV per packet; see encrypt_frame for why random rather than a counter.
    iv = os.urandom(IV_LENGTH)
    encrypted = DataPacket()
    encrypted.CopyFrom(packet)
    encrypted.encrypted_packet.CopyFrom(  # setting this member clears the plaintext value
        EncryptedPacket(
            encryption_type=Encryption.Type.GCM,
            iv=iv,
            key_index=key_index,
            encrypted_value=aead.encrypt(iv, payload.SerializeToString(), None),
        )
    )
    return encrypted


def data_packet_key_index(packet: DataPacket) -> int:
    """Key index of an encrypted data packet (not authenticated); DecryptionError if not one."""
    _require_encrypted(packet)
    return packet.encrypted_packet.key_index


def parse_data_packet(wire: bytes) -> DataPacket:
    """Parse a DataPacket from the data channel; DecryptionError when the bytes are not one."""
    packet = DataPacket()
    try:
        packet.ParseFromString(bytes(wire))
    except Exception as error:  # protobuf raises DecodeError, but also others on hostile input
        raise DecryptionError(f"not a DataPacket: {type(error).__name__}") from None
    return packet


def decrypt_data_packet(packet: DataPacket | bytes, key: bytes) -> DataPacket:
    """Decrypt an ``encrypted_packet`` as livekit-client does; refuse anything else.

    ``packet`` is a parsed DataPacket or its wire bytes. Returns a new DataPacket with the decrypted
    value and, like livekit-client, only ``participant_identity`` and ``participant_sid`` copied
    from the clear envelope (both set by the SFU, not authenticated). Raises DecryptionError when
    the packet is not encrypted (plaintext packets are refused: any room member could send them),
    does not authenticate under ``key``, or decrypts to something that is not an
    EncryptedPacketPayload with a value.
    """
    aead = cipher(key)
    if not isinstance(packet, DataPacket):
        packet = parse_data_packet(packet)
    _require_encrypted(packet)
    envelope = packet.encrypted_packet
    if len(envelope.iv) != IV_LENGTH:
        raise DecryptionError(
            f"encrypted packet IV is {len(envelope.iv)} bytes, expected {IV_LENGTH}"
        )
    if len(envelope.encrypted_value) < GCM_TAG_LENGTH:
        raise DecryptionError(
            f"encrypted packet value is {len(envelope.encrypted_value)} bytes,"
            " shorter than the GCM tag"
        )
    try:
        plaintext = aead.decrypt(envelope.iv, envelope.encrypted_value, None)
    except InvalidTag:
        raise DecryptionError("data packet failed authentication (wrong key or tampered)") from None
    payload = EncryptedPacketPayload()
    try:
        payload.ParseFromString(plaintext)
    except Exception as error:
        raise DecryptionError(
            f"decrypted data is not an EncryptedPacketPayload: {type(error).__name__}"
        ) from None
    kind = payload.WhichOneof("value")
    if kind is None:
        raise DecryptionError("decrypted EncryptedPacketPayload carries no known value")
    decrypted = DataPacket(
        participant_identity=packet.participant_identity,
        participant_sid=packet.participant_sid,
    )
    getattr(decrypted, kind).CopyFrom(getattr(payload, kind))
    return decrypted


def _require_encrypted(packet: DataPacket) -> None:
    kind = packet.WhichOneof("value")
    if kind != "encrypted_packet":
        raise DecryptionError(f"data packet is not encrypted (DataPacket.{kind}); refused")
