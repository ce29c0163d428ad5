"""NACKs the runner cannot answer: a packet of the video stream lost for good, so a keyframe now.

The LiveKit SDK negotiates the published video without RTX (its ``create_sender`` keeps only the
chosen codec in the transceiver's codec preferences; README, "Behaviour on real links"), so
libwebrtc sends its padding (probes, and the loss-based estimator's long padding bursts) on the
video stream itself, with sequence numbers of their own. A padding packet lost on the way to
LiveKit leaves a hole that nobody can fill: LiveKit forwards the stream with the hole and NACKs
the runner for it, the runner's libwebrtc keeps no padding to send again, and the browser holds
every later frame waiting for the missing sequence number until a keyframe comes (traced with
``bench/trace_repairs.py``: every freeze over 0.5 s on the lossy links was one). Chrome asks for
that keyframe after about 3 s, the reference viewer after its stall watch's 0.4 s.

The watch reads the video's outbound-rtp counters, NACK packets received and packets sent again,
every ``NACK_WATCH_POLL_S``: NACKs that keep coming while (almost) nothing is sent again are
NACKs for packets the runner does not have, and the runner sends a keyframe then, for every
viewer (measured next to the relays' traces on 2 Mbit/s links: below).

Not caught: a hole on a still screen. LiveKit sends its NACK tries only as packets arrive, and a
still screen sends one skip picture a second (``capture.idle_refresh_s``), so the tries do not
fall within the window; the next change stays held until the viewer asks for a keyframe (the
reference viewer's stall watch) or Chrome does (about 3 s).

The same counters feed ``ReportWatch`` (below): video that LiveKit never reports on goes
nowhere, and the runner joins afresh.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

# How often the outbound-rtp counters are read (``rtc.Room.get_rtc_stats``: about 2 % of a core
# at this rate, so only while another participant is in the room; runner.publish).
NACK_WATCH_POLL_S = 0.1
# LiveKit NACKs a missing sequence number at most 5 times (mediatransportutil's nack queue:
# after 20 ms, then a round trip later, growing by 1.25 each time: the third about 2.25 round
# trips after the first, the fifth about 5.8) and stops once the packet came. A lost video packet
# is sent again at the first NACK and so NACKed once or twice; a hole is NACKed 5 times and
# nothing is sent again. Over the window (NACK_WATCH_WINDOW_S, or NACK_WATCH_WINDOW_RTTS round
# trips when longer), at least NACK_WATCH_MIN_NACKS NACK packets with fewer than
# NACK_WATCH_ANSWERED_MAX of them answered by a packet sent again mean a hole. Measured: the
# padding losses came to 4-6 NACKs with 0-1 sent again within 0.3-0.4 s; bursts of lost video
# packets at 80 ms to at least 2 of 5 sent again (up to 18 NACKs, 12 sent again, in 0.5 s).
# Replayed over the relays' traces of 54 link runs of 2026-12-07/08 (48 lossy; 152 padding
# packets lost on the runner's leg; bench/trace_repairs.py's parsing, polled every 0.1 s):
# 3 NACKs in 0.3 s / 4 round trips asked 64 ms sooner (median 253 ms after the loss, p90 522)
# than the first version's 4 in 0.5 s / 8 round trips (317, p90 663), and 4 times without a
# padding loss in the second before instead of 11 (shorter windows mix fewer answered NACKs of
# other losses in).
NACK_WATCH_WINDOW_S = 0.3
NACK_WATCH_WINDOW_RTTS = 4
NACK_WATCH_MIN_NACKS = 3
NACK_WATCH_ANSWERED_MAX = 0.25
# After a hole, the NACKs of NACK_WATCH_QUIET_RTTS round trips (at least NACK_WATCH_QUIET_S) are
# not counted: LiveKit's remaining tries for the holes the keyframe closes (a probe burst can lose
# several padding packets: 4 in 0.07 s once, at 80 ms; counted, they asked for 3 more keyframes
# within 0.4 s). A hole after that, such as one right after the keyframe, is asked for again from
# its later tries.
NACK_WATCH_QUIET_S = 0.3
NACK_WATCH_QUIET_RTTS = 6


@dataclass
class NackWatch:
    """Fed the counters (``update``); says when a keyframe would close a hole. Pure."""

    window_s: float = NACK_WATCH_WINDOW_S
    window_rtts: float = NACK_WATCH_WINDOW_RTTS
    min_nacks: int = NACK_WATCH_MIN_NACKS
    answered_max: float = NACK_WATCH_ANSWERED_MAX
    quiet_s: float = NACK_WATCH_QUIET_S
    quiet_rtts: float = NACK_WATCH_QUIET_RTTS
    _last: tuple[int, int] | None = None
    _deltas: deque[tuple[float, int, int]] = field(default_factory=deque)
    _quiet_until: float = float("-inf")

    def window(self, rtt_s: float | None) -> float:
        """The window over which NACKs are counted, for a round trip of ``rtt_s`` (to LiveKit)."""
        return max(self.window_s, self.window_rtts * (rtt_s or 0.0))

    def update(self, at: float, nacks: int, resent: int, rtt_s: float | None = None) -> tuple[int, int] | None:
        """The counters at ``at`` (seconds, any steady clock): NACK packets received and packets
        sent again, both since the track began, and the round trip if known. Returns (NACKs,
        packets sent again) over the window when they show a hole, else None; after one, the
        NACKs of the quiet time that follows are not counted (NACK_WATCH_QUIET_S). Counters that
        went down (a republished track starts again from zero) restart the watch."""
        last, self._last = self._last, (nacks, resent)
        if last is None or nacks < last[0] or resent < last[1]:
            self._deltas.clear()
            return None
        if at < self._quiet_until:
            return None
        self._deltas.append((at, nacks - last[0], resent - last[1]))
        window = self.window(rtt_s)
        while self._deltas and self._deltas[0][0] <= at - window:
            self._deltas.popleft()
        window_nacks = sum(d[1] for d in self._deltas)
        window_resent = sum(d[2] for d in self._deltas)
        if window_nacks < self.min_nacks or window_resent >= self.answered_max * window_nacks:
            return None
        self._deltas.clear()
        self._quiet_until = at + max(self.quiet_s, self.quiet_rtts * (rtt_s or 0.0))
        return window_nacks, window_resent


# --- receiver reports ----------------------------------------------------------------------------

# LiveKit sends a receiver report on the video it receives about once a second. Video sent for
# this long (at least REPORT_WATCH_MIN_PACKETS packets; a still screen sends one a second) with
# not a single new report goes nowhere, and so do frames handed to the SDK for this long that
# leave no packet at all. Written for the case seen after the SDK's own full reconnect following
# a 30 s outage (tests/test_faults.py: a viewer decoded nothing for 35 s; which of the two it was
# is not known), which the runner now meets by joining afresh at once (runner.publish.RESTARTED);
# this watch stays as the backstop for any session whose video goes nowhere. The runner then
# starts the connection afresh (runner.publish). Longer than the SDK takes to notice a server that is
# gone (its ping timeout, 15 s: it then resumes on its own, and the watch starts again): at 10 s
# the watch left during such an outage and the runner's fresh connection came on top of the SDK's.
REPORT_WATCH_SILENCE_S = 20.0
# Until the first report on a track (a join), this much: the first report came 1-2 s after the
# first packets.
REPORT_WATCH_FIRST_S = 6.0
REPORT_WATCH_MIN_PACKETS = 5


@dataclass
class ReportWatch:
    """Fed the frames pushed to the SDK, the video's packets sent and the receiver reports
    received (``update``); says when the video goes nowhere. Pure."""

    silence_s: float = REPORT_WATCH_SILENCE_S
    first_s: float = REPORT_WATCH_FIRST_S
    min_packets: int = REPORT_WATCH_MIN_PACKETS
    _since: tuple[float, int, int, int] | None = None  # (at, pushed, sent, reports) at the last report
    _unsent: tuple[float, int, int] | None = None  # (at, pushed, sent) at the last packet

    def update(self, at: float, pushed: int, sent: int, reports: int) -> tuple[float, int, int] | None:
        """The counters at ``at`` (seconds, steady clock): frames pushed, packets sent and reports,
        the last two since the track began. Returns (seconds, packets sent, frames pushed) over
        that time when the video went unreported for ``silence_s`` (``first_s`` before the
        track's first report) with at least ``min_packets`` sent, or when ``silence_s`` of frames
        (at least ``min_packets``) left no packet at all; then counting starts again. Else None.
        Counters that went down (a republished track) start the count again."""
        since, unsent = self._since, self._unsent
        if since is None or reports != since[3] or sent < since[2] or pushed < since[1]:
            self._since = since = (at, pushed, sent, reports)
        if unsent is None or sent != unsent[2] or pushed < unsent[1]:
            self._unsent = unsent = (at, pushed, sent)
        limit = self.first_s if reports == 0 else self.silence_s
        if at - since[0] >= limit and sent - since[2] >= self.min_packets:
            self._since = self._unsent = None
            return at - since[0], sent - since[2], pushed - since[1]
        if at - unsent[0] >= self.silence_s and pushed - unsent[1] >= self.min_packets:
            self._since = self._unsent = None
            return at - unsent[0], 0, pushed - unsent[1]
        return None
