"""Pushes (kind 2): sealed messages from the runner to one viewer's session, sent to that
participant only, reliably unless asked otherwise (pointer positions go lossy: a newer one
replaces a lost one). Sending happens in background tasks; a viewer that left is not an error."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from livekit import rtc

from runner.control import envelope as env
from runner.control.sessions import Session, Sessions
from runner.logs import get_logger

log = get_logger(__name__)


class Pusher:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions
        self.room: rtc.Room | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def push(self, session: Session, body: Mapping[str, object], reliable: bool = True) -> None:
        room = self.room
        if room is None or not self._sessions.key:
            return
        payload = self._sessions.seal(session, env.KIND_PUSH, env.DATA_CONTEXT, body)
        task = asyncio.get_running_loop().create_task(self._send(room, payload, session.identity, reliable),
                                                      name="control-push")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def push_all(self, body: Mapping[str, object], reliable: bool = True) -> None:
        for session in self._sessions:
            self.push(session, body, reliable)

    async def _send(self, room: rtc.Room, payload: bytes, identity: str, reliable: bool) -> None:
        try:
            await room.local_participant.publish_data(
                payload, reliable=reliable, destination_identities=[identity], topic=env.DATA_CONTEXT
            )
        except Exception as exc:  # the viewer left or the room is reconnecting
            log.debug("push_failed", identity=identity, error=f"{type(exc).__name__}: {exc}")
