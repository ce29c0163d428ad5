"""LiveKit end-to-end encryption (E2EE) for media frames and data packets, byte-compatible with
livekit-client 2.23 (the browser viewer). See docs/e2ee.md.

Typical use, one shared passphrase as with JS ``ExternalE2EEKeyProvider.setKey(passphrase)``::

    ring = KeyRing()
    ring.set_key("passphrase")                        # index 0, PBKDF2
    wire = ring.encrypt_frame(access_unit, codec="h264")
    packet = ring.decrypt_data_packet(data_packet)    # refuses plaintext packets
"""

from ._aead import GCM_TAG_LENGTH, IV_LENGTH
from .data import (
    ENCRYPTED_PACKET_KINDS,
    data_packet_key_index,
    decrypt_data_packet,
    encrypt_data_packet,
    parse_data_packet,
)
from .errors import DecryptionError
from .frame import (
    CODECS,
    Codec,
    clear_header_length,
    decrypt_frame,
    encrypt_frame,
    frame_key_index,
)
from .keys import (
    DEFAULT_RING_SIZE,
    DEFAULT_SALT,
    Kdf,
    KeyRing,
    derive_key,
    key_fingerprint,
    ratchet,
)

__all__ = [
    "CODECS",
    "DEFAULT_RING_SIZE",
    "DEFAULT_SALT",
    "ENCRYPTED_PACKET_KINDS",
    "GCM_TAG_LENGTH",
    "IV_LENGTH",
    "Codec",
    "DecryptionError",
    "Kdf",
    "KeyRing",
    "clear_header_length",
    "data_packet_key_index",
    "decrypt_data_packet",
    "decrypt_frame",
    "derive_key",
    "encrypt_data_packet",
    "encrypt_frame",
    "frame_key_index",
    "key_fingerprint",
    "parse_data_packet",
    "ratchet",
]
