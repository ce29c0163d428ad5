"""How strong the shared passphrase is, and a strong one for operators who need one.

Every key the runner uses (frames, data packets, the control envelope) is derived from the one
passphrase with a fixed salt, as livekit-client derives it; so anyone holding one encrypted frame
or sealed message can test guesses offline, as fast as PBKDF2 (100 000 SHA-256 rounds) runs. Only
the passphrase's own entropy stops that. A short one gets a loud warning at start and on reload.
"""

from __future__ import annotations

import secrets

MIN_PASSPHRASE_CHARS = 16
"""Below this the runner warns (``weak_passphrase``). 16 random characters of a 64-symbol
alphabet are 96 bits; a shorter passphrase typed by a person is usually far weaker."""
GENERATED_BYTES = 24
"""Random bytes in a generated passphrase: 192 bits, 32 URL-safe characters."""


def generate_passphrase() -> str:
    """A random passphrase: 32 URL-safe base64 characters (192 bits from the OS's CSPRNG)."""
    return secrets.token_urlsafe(GENERATED_BYTES)


def passphrase_weakness(passphrase: str) -> str | None:
    """Why ``passphrase`` is too weak to stand offline guessing, or None (long enough).

    Only the length is judged: the runner cannot know how a passphrase was made, and a long one
    is what defeats guessing; the message never contains the passphrase itself.
    """
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        return (f"e2ee.passphrase has {len(passphrase)} characters, fewer than {MIN_PASSPHRASE_CHARS}: "
                "anyone who records one encrypted frame can guess it offline; "
                "`desktop-runner passphrase` prints a strong one")
    return None
