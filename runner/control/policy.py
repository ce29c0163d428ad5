"""Authorization, pure: who holds control, who may take it, and whether a session's input or
call may act. The settings (``control.view_only``, ``control.allowed_identities``) are read at each
decision, so a reloaded configuration applies to the next message."""

from __future__ import annotations

from collections.abc import Callable

from runner.config import ControlSettings
from runner.control.sessions import Session


class Refused(Exception):
    """A request that policy refuses: ``code`` is the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ControlPolicy:
    def __init__(self, settings: Callable[[], ControlSettings]) -> None:
        self._settings = settings
        self.controller: Session | None = None

    def may_control(self, identity: str) -> bool:
        allowed = self._settings().allowed_identities
        return not allowed or identity in allowed

    def input_refusal(self, session: Session) -> str | None:
        """Why this session's input may not act now (a rejection reason), None when it may."""
        if self._settings().view_only:
            return "view_only"
        if self.controller is not session:
            return "no_control"
        return None

    def check_request(self, session: Session) -> None:
        """May ``session`` take control? Raises Refused when not."""
        if self._settings().view_only:
            raise Refused("forbidden", "this runner is view-only (control.view_only)")
        if not self.may_control(session.identity):
            raise Refused("forbidden", "this identity may not take control (control.allowed_identities)")
        c = self.controller
        if c is not None and c is not session and c.identity != session.identity:
            raise Refused("busy", f"{c.identity} has control")

    def controller_still_allowed(self) -> bool:
        """False when the current controller lost the right (view_only, allowed identities)."""
        c = self.controller
        return c is None or (not self._settings().view_only and self.may_control(c.identity))
