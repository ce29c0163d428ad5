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
from runner.control.ordering import InputOrder

SESSIONS_PER_IDENTITY = 4
MAX_SESSIONS = 64
# Sessions a hello opened and nothing has used yet. The server can replay a viewer's sealed
# hello at will (it is bound to the sender and runner, not to a moment), so these are kept apart
# and only evict each other; a session counts among the above once a message authenticated in it.
PENDING_PER_IDENTITY = 4
MAX_PENDING = 64


@dataclass(eq=False)
class Session:
    id: int
    identity: str
    key_index: int
    window: env.ReplayWindow = field(default_factory=env.ReplayWindow)
    order: InputOrder = field(default_factory=InputOrder)
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
        self._by_id: OrderedDict[int, Session] = OrderedDict()  # used: a message authenticated in it
        self._pending: OrderedDict[int, Session] = OrderedDict()  # opened by a hello, not used yet
        self.evicted: list[Session] = []  # used sessions pushed out by newer ones; the owner empties it

    def __iter__(self) -> Iterator[Session]:
        return iter([*self._by_id.values(), *self._pending.values()])

    def __len__(self) -> int:
        return len(self._by_id) + len(self._pending)

    def set_key(self, key: bytes, key_index: int) -> bool:
        """Install the key; True when it replaced another one (every session then ended)."""
        rotated = bool(self.key) and (key, key_index) != (self.key, self.key_index)
        self.key, self.key_index = key, key_index
        if rotated:
            self._by_id.clear()
            self._pending.clear()
        return rotated

    # --- incoming -----------------------------------------------------------------------------
    def open(self, data: bytes, sender: str | None, kind: int, context: str) -> tuple[Session, env.Opened]:
        """Find the session, check freshness, authenticate; EnvelopeError says why not.

        ``sender`` None (not yet announced by LiveKit) means: the session's own identity.
        """
        header = env.parse_header(data)
        if header.kind != kind or header.key_index != self.key_index or not self.key:
            raise env.EnvelopeError("auth", "wrong kind or key index")
        session = self._by_id.get(header.session) or self._pending.get(header.session)
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
        if self._pending.pop(session.id, None) is not None:
            self._establish(session)
        self._by_id.move_to_end(session.id)
        return session, opened

    def _establish(self, session: Session) -> None:
        """A pending session was used: it joins the used ones, the least recently used of its
        identity (and of all) making room."""
        mine = [s for s in self._by_id.values() if s.identity == session.identity]
        for old in mine[: max(0, len(mine) - SESSIONS_PER_IDENTITY + 1)]:
            self.evicted.append(self._by_id.pop(old.id))
        while len(self._by_id) >= MAX_SESSIONS:
            self.evicted.append(self._by_id.popitem(last=False)[1])
        self._by_id[session.id] = session

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
    def new(self, identity: str) -> Session:
        """Open a pending session for ``identity`` (a hello). It can push out only other pending
        sessions, never one in use."""
        mine = [s for s in self._pending.values() if s.identity == identity]
        for old in mine[: max(0, len(mine) - PENDING_PER_IDENTITY + 1)]:
            del self._pending[old.id]
        while len(self._pending) >= MAX_PENDING:
            self._pending.popitem(last=False)
        sid = int.from_bytes(os.urandom(8), "big") or 1
        session = self._pending[sid] = Session(sid, identity, self.key_index)
        return session

    def drop(self, session: Session) -> None:
        self._by_id.pop(session.id, None)
        self._pending.pop(session.id, None)

    def drop_identity(self, identity: str) -> list[Session]:
        gone = [s for s in self if s.identity == identity]
        for s in gone:
            self.drop(s)
        return gone

    def identities(self) -> set[str]:
        return {s.identity for s in self}
