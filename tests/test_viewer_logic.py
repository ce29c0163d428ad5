"""The viewer's pure decisions, run in Node as the browser runs them: what a link may carry
(viewer/link.js) and when a picture may be shown (viewer/trust.js); cursor.js's are in
test_viewer_cursor.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

VIEWER = Path(__file__).resolve().parent.parent / "viewer"


def js(expression: str) -> object:
    """The JSON value of ``expression``, evaluated in Node with link.js, trust.js and cursor.js
    imported (as ``link``, ``trust``, ``cursor``)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is required for this test (scripts/setup.sh names it)", pytrace=False)
    script = (f"import * as link from {json.dumps((VIEWER / 'link.js').as_uri())};\n"
              f"import * as trust from {json.dumps((VIEWER / 'trust.js').as_uri())};\n"
              f"import * as cursor from {json.dumps((VIEWER / 'cursor.js').as_uri())};\n"
              f"process.stdout.write(JSON.stringify({expression}));\n")
    done = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True,
                          text=True, timeout=30, check=True)
    return json.loads(done.stdout)


def test_a_link_without_secrets_is_read_and_kept_as_it_is() -> None:
    assert js("link.parseLink('', '#url=ws%3A%2F%2F127.0.0.1%3A7880&runner=host-1&control=0')") == {
        "url": "ws://127.0.0.1:7880", "token": "", "passphrase": "", "keyIndex": "0",
        "runner": "host-1", "control": False, "secretsInFragment": [], "secretsInQuery": [],
        "cleanHash": "#url=ws%3A%2F%2F127.0.0.1%3A7880&runner=host-1&control=0",
    }


def test_secrets_in_the_fragment_are_used_and_named_but_not_kept() -> None:
    parsed = js("link.parseLink('', '#url=ws%3A%2F%2Fh&token=T0K&passphrase=p+w&keyIndex=3')")
    assert (parsed["token"], parsed["passphrase"], parsed["keyIndex"]) == ("T0K", "p w", "3")
    assert parsed["secretsInFragment"] == ["token", "passphrase"]
    assert parsed["cleanHash"] == "#url=ws%3A%2F%2Fh&keyIndex=3"


def test_secrets_in_the_query_are_refused() -> None:
    parsed = js("link.parseLink('?url=ws%3A%2F%2Fh&token=T0K&passphrase=pw', '')")
    assert (parsed["url"], parsed["token"], parsed["passphrase"]) == ("ws://h", "", "")
    assert parsed["secretsInQuery"] == ["token", "passphrase"]
    assert parsed["cleanHash"] == "#url=ws%3A%2F%2Fh"


GOOD = {"connected": True, "track": True, "announcedEncrypted": True, "decrypting": True,
        "failing": False, "otherRunner": False}


def verdict(**changes: object) -> object:
    return js(f"trust.screenVerdict({json.dumps({**GOOD, **changes})})")


def test_the_runners_encrypted_decrypting_track_is_shown() -> None:
    assert verdict() == "shown"


@pytest.mark.parametrize(("changes", "expected"), [
    ({"connected": False}, "idle"),
    ({"track": False}, "waiting"),
    ({"announcedEncrypted": False}, "unencrypted"),
    ({"decrypting": False}, "unencrypted"),  # the E2EE worker passes its frames through
    ({"decrypting": None}, "unencrypted"),  # the worker has not said yet
    ({"failing": True}, "undecryptable"),
    ({"otherRunner": True}, "not-runner"),
    ({"otherRunner": True, "track": False}, "not-runner"),
])
def test_anything_less_shows_no_picture(changes: dict, expected: str) -> None:
    assert verdict(**changes) == expected
