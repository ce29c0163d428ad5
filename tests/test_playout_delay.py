"""The latency setting docs/operations.md recommends reaches Chromium: livekit-server's
``room.playout_delay`` (min = max = 0) puts the RTP playout-delay extension on the runner's screen
track for the reference viewer, which is what switches Chrome to rendering each frame as soon as it
is decoded (libwebrtc's low-latency rendering; the README's Known limitations has the measurements).
Without the setting the extension is absent and Chrome smooths, hence the two cases.

Real parts: livekit-server on loopback (its own, configured for the case), Xvfb, the runner,
headless Chromium with the reference viewer.
"""

from __future__ import annotations

import pytest

from realenv import LiveKitServer, Runner, mint_token, paint, wait_for_viewer

pytestmark = pytest.mark.integration

PASSPHRASE = "playout delay passphrase, 2026"
PLAYOUT_DELAY_URI = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
STARTUP_TIMEOUT_S = 30

# The header extensions negotiated for the shown screen track (RTCRtpReceiver.getParameters()).
RECEIVER_EXTENSIONS_JS = """
() => {
  const uris = [];
  for (const p of window.viewer.room.remoteParticipants.values())
    for (const pub of p.videoTrackPublications.values())
      if (pub.track?.receiver)
        uris.push(...pub.track.receiver.getParameters().headerExtensions.map((e) => e.uri));
  return uris;
}
"""


@pytest.mark.parametrize("playout_delay", [(0, 0), None], ids=["playout-delay-0", "server-default"])
async def test_playout_delay_setting_reaches_the_viewers_screen_track(
        playout_delay, xvfb, room_name, page, open_viewer):
    paint(xvfb.display, "#336699")
    with LiveKitServer(playout_delay=playout_delay) as server, Runner.joining(
            server, room=room_name, passphrase=PASSPHRASE, display=xvfb.display) as runner:
        runner.wait_for_event("track_published", timeout=STARTUP_TIMEOUT_S)
        token = mint_token(server.api_key, server.api_secret, room_name, "viewer")
        await open_viewer(page, server.url, token, PASSPHRASE)
        await wait_for_viewer(page, lambda s: s["framesDecoded"] > 0, timeout=STARTUP_TIMEOUT_S,
                              what="the screen track decoding")
        uris = await page.evaluate(RECEIVER_EXTENSIONS_JS)
    assert uris, "the viewer's screen track has no negotiated header extensions at all"
    assert (PLAYOUT_DELAY_URI in uris) == (playout_delay is not None), uris
