"""The one exception E2EE decryption raises."""

from __future__ import annotations


class DecryptionError(ValueError):
    """A frame or data packet could not be decrypted and authenticated.

    Raised for every failure on received bytes: wrong key, bad authentication tag, truncated or
    malformed frame, bad trailer or escaping, missing key index, unparsable or unencrypted data
    packet. Messages describe the failure in one line and never contain key bytes.
    """
