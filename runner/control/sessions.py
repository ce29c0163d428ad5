"""Sessions and authentication: the control key, the sessions opened with ``dr.hello``, and the
envelope checks every incoming message passes before anything reads its body.

A message is authentic when its header names a session of the sender, its sequence number is fresh
in that session's replay window, and the envelope verifies under the current key for
(sender, this runner, context). docs/protocol.md, "Envelope" and "Sessions and sequence numbers".
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from runner.control import envelope as env

SESSIONS_PER_IDENTITY = 4
MAX_SESSIONS = 64


@dataclass(eq=False)
class Session:
    id: int
    identity: str
    key_index: int
    window: env.ReplayWindow = field(default_factory=env.ReplayWindow)
    out_seq: int = 0

    def next_seq(self) -> int:
        self.out_seq += 1
        return self.out_seq


class Sessions:
    """The control key and the open sessions, least recently used first."""

    def __init__(self, identity: str) -> None:
        self.identity = identity  # ours: the recipient of what viewers seal
        self.key = b""
        self.key_index = 0
        self._by_id: OrderedDict[int, Session] = OrderedDict()

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def set_key(self, key: bytes, key_index: int) -> bool:
        """Install the key; True when it replaced another one (every session then ended)."""
        rotated = bool(self.key) and (key, key_index) != (self.key, self.key_index)
        self.key, self.key_index = key, key_index
        if rotated:
            self._by_id.clear()
        return rotated

    # --- incoming -----------------------------------------------------------------------------
    def open(self, data: bytes, sender: str | None, kind: int, context: str) -> tuple[Session, env.Opened]:
        """Find the session, check freshness, authenticate; EnvelopeError says why not.

        ``sender`` None (not yet announced by LiveKit) means: the session's own identity.
        """
        header = env.parse_header(data)
        if header.kind != kind or header.key_index != self.key_index or not self.key:
            raise env.EnvelopeError("auth", "wrong kind or key index")
        session = self._by_id.get(header.session)
        if session is None or (sender is not None and session.identity != sender):
            if sender is None:
                raise env.EnvelopeError("auth", "no sender and no such session")
            # Authenticate before saying "unknown session", so forgeries are counted as such.
            env.open_envelope(self.key, data, sender=sender, recipient=self.identity, context=context)
            raise env.EnvelopeError("unknown_session", "no such session for this sender")
        if not session.window.check(header.seq):
            raise env.EnvelopeError("replay", "sequence number already seen or too old")
        opened = env.open_envelope(self.key, data, sender=session.identity, recipient=self.identity,
                                   context=context)
        session.window.accept(header.seq)
        self._by_id.move_to_end(session.id)
        return session, opened

    def open_hello(self, data: bytes, sender: str) -> env.Opened:
        """Authenticate a ``dr.hello`` request (session 0); EnvelopeError says why not."""
        header = env.parse_header(data)
        if header.kind != env.KIND_RPC_REQUEST or header.session != 0 or header.key_index != self.key_index:
            raise env.EnvelopeError("auth", "not a hello request under the current key")
        return env.open_envelope(self.key, data, sender=sender, recipient=self.identity, context="dr.hello")

    # --- outgoing -----------------------------------------------------------------------------
    def seal(self, session: Session, kind: int, context: str, body: Mapping[str, object]) -> bytes:
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        return env.seal(self.key, kind=kind, key_index=self.key_index, session=session.id,
                        seq=session.next_seq(), sender=self.identity, recipient=session.identity,
                        context=context, body=raw)

    # --- the table ----------------------------------------------------------------------------
    def new(self, identity: str) -> tuple[Session, list[Session]]:
        """Open a session for ``identity``; also returns the sessions evicted to make room."""
        evicted: list[Session] = []
        mine = [s for s in self._by_id.values() if s.identity == identity]
        for old in mine[: max(0, len(mine) - SESSIONS_PER_IDENTITY + 1)]:
            evicted.append(self._by_id.pop(old.id))
        while len(self._by_id) >= MAX_SESSIONS:
            evicted.append(self._by_id.popitem(last=False)[1])
        sid = int.from_bytes(os.urandom(8), "big") or 1
        session = self._by_id[sid] = Session(sid, identity, self.key_index)
        return session, evicted

    def drop(self, session: Session) -> None:
        self._by_id.pop(session.id, None)

    def drop_identity(self, identity: str) -> list[Session]:
        gone = [s for s in self._by_id.values() if s.identity == identity]
        for s in gone:
            del self._by_id[s.id]
        return gone

    def identities(self) -> set[str]:
        return {s.identity for s in self._by_id.values()}
