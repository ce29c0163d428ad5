"""Order of reliable input, pure: each session's reliable messages must arrive numbered 1, 2, 3, ...
(the ``o`` field) with no gap. The replay window (envelope.ReplayWindow) stops copies; this stops
a server that reorders or drops messages from changing what is typed (`rm -rf ./build` arriving
as `rm -rf ./ build`). docs/protocol.md, "Order".
"""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    IN_ORDER = "in_order"    # inject it
    STALE = "stale"          # at or below what was already taken: a copy or an overtaken message
    GAP = "gap"              # something before it is missing or late: the session desynchronises
    DESYNCED = "desynced"    # after a gap, until the viewer's reset


class InputOrder:
    """Per session: the next ordinal expected, and whether the session is in step."""

    __slots__ = ("expected", "in_step")

    def __init__(self) -> None:
        self.expected = 1
        self.in_step = True

    def check(self, ordinal: int, *, reset: bool) -> Verdict:
        if ordinal < self.expected:
            return Verdict.STALE
        if reset:  # a reset releases everything, so it may resynchronise: nothing before it matters
            self.expected, self.in_step = ordinal + 1, True
            return Verdict.IN_ORDER
        if not self.in_step:
            self.expected = ordinal + 1
            return Verdict.DESYNCED
        if ordinal > self.expected:
            self.expected, self.in_step = ordinal + 1, False
            return Verdict.GAP
        self.expected += 1
        return Verdict.IN_ORDER
