"""Configuration: precedence, secrets and their *_file forms, one-line errors."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from runner.cli import main as cli_main
from runner.config import (
    AudioSettings,
    CaptureSettings,
    ConfigError,
    E2EESettings,
    EncoderSettings,
    LiveKitSettings,
    LogSettings,
    load_settings,
)

REPO = Path(__file__).resolve().parent.parent
BASE_TOML = """
[livekit]
url = "ws://127.0.0.1:7880"
api_key = "devkey"
api_secret = "s3cret-from-toml"
[e2ee]
passphrase = "pass-from-toml"
[capture]
fps = 15
monitor = 2
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("RUNNER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def toml_file(tmp_path: Path) -> Path:
    path = tmp_path / "runner.toml"
    path.write_text(BASE_TOML)
    return path


def test_toml_values_are_loaded(toml_file: Path) -> None:
    s = load_settings(toml_file)
    assert (s.livekit.url, s.capture.fps, s.capture.monitor) == ("ws://127.0.0.1:7880", 15.0, 2)


def test_defaults_fill_what_toml_leaves_out(toml_file: Path) -> None:
    s = load_settings(toml_file)
    assert (s.livekit.room, s.encoder.bitrate, s.e2ee.frame_engine) == ("desktop", 4_000_000, "runner")


def test_environment_beats_toml(toml_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_CAPTURE__FPS", "24")
    monkeypatch.setenv("RUNNER_LIVEKIT__ROOM", "from-env")
    s = load_settings(toml_file)
    assert (s.capture.fps, s.livekit.room, s.capture.monitor) == (24.0, "from-env", 2)


def test_flags_beat_environment(toml_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_CAPTURE__FPS", "24")
    s = load_settings(toml_file, {"capture": {"fps": 60}})
    assert (s.capture.fps, s.capture.monitor) == (60.0, 2)


def test_config_file_from_environment_variable(toml_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_CONFIG_FILE", str(toml_file))
    assert load_settings().capture.fps == 15.0


def test_environment_alone_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_LIVEKIT__URL", "wss://lk.example")
    monkeypatch.setenv("RUNNER_LIVEKIT__TOKEN", "tok-value")
    monkeypatch.setenv("RUNNER_E2EE__PASSPHRASE", "pw-value")
    s = load_settings()
    assert s.livekit.token is not None and s.livekit.token.get_secret_value() == "tok-value"


def test_secret_file_forms_are_read_without_trailing_newline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pass").write_text("from-file\n")
    (tmp_path / "secret").write_text("api-secret-file\n")
    monkeypatch.setenv("RUNNER_LIVEKIT__URL", "ws://h:1")
    monkeypatch.setenv("RUNNER_LIVEKIT__API_KEY", "k")
    monkeypatch.setenv("RUNNER_LIVEKIT__API_SECRET_FILE", str(tmp_path / "secret"))
    monkeypatch.setenv("RUNNER_E2EE__PASSPHRASE_FILE", str(tmp_path / "pass"))
    s = load_settings()
    assert s.e2ee.passphrase is not None and s.e2ee.passphrase.get_secret_value() == "from-file"
    assert s.livekit.api_secret is not None and s.livekit.api_secret.get_secret_value() == "api-secret-file"


def test_secrets_never_appear_in_repr_or_str(toml_file: Path) -> None:
    s = load_settings(toml_file)
    for text in (repr(s), str(s), repr(s.livekit), repr(s.e2ee), s.model_dump_json()):
        assert "s3cret-from-toml" not in text
        assert "pass-from-toml" not in text


def _error(toml: str | None, tmp_path: Path, overrides: dict[str, Any] | None = None) -> str:
    path = None
    if toml is not None:
        path = tmp_path / "c.toml"
        path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_settings(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    assert "s3cret-from-toml" not in message and "pass-from-toml" not in message
    return message


def test_missing_url_names_the_key(tmp_path: Path) -> None:
    assert _error('[e2ee]\npassphrase = "pass-from-toml"\n', tmp_path) == "livekit.url is required"


def test_missing_passphrase_names_the_key(tmp_path: Path) -> None:
    toml = BASE_TOML.replace('passphrase = "pass-from-toml"', "")
    assert _error(toml, tmp_path) == "e2ee.passphrase (or e2ee.passphrase_file) is required"


def test_missing_credentials_name_the_keys(tmp_path: Path) -> None:
    toml = '[livekit]\nurl = "ws://h:1"\n[e2ee]\npassphrase = "pass-from-toml"\n'
    assert _error(toml, tmp_path) == "livekit.api_key and livekit.api_secret (or livekit.token) are required"


def test_out_of_range_value_names_the_key(tmp_path: Path) -> None:
    assert _error(BASE_TOML, tmp_path, {"capture": {"fps": 0}}) == "capture.fps: Input should be greater than 0"


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    assert _error(BASE_TOML + "\n[encoder]\nbitrat = 5\n", tmp_path) == "encoder.bitrat: unknown setting"


def test_bad_url_names_the_key(tmp_path: Path) -> None:
    assert _error(BASE_TOML.replace("ws://127.0.0.1:7880", "127.0.0.1:7880"), tmp_path) == (
        "livekit.url must look like ws://host:port or wss://host"
    )


def test_unreadable_secret_file_names_the_key(tmp_path: Path) -> None:
    toml = BASE_TOML.replace('passphrase = "pass-from-toml"', f'passphrase_file = "{tmp_path}/nope"')
    assert _error(toml, tmp_path) == (
        f"cannot read e2ee.passphrase_file '{tmp_path}/nope': No such file or directory"
    )


def test_secret_and_its_file_together_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "p").write_text("x")
    toml = BASE_TOML.replace(
        'passphrase = "pass-from-toml"', f'passphrase = "pass-from-toml"\npassphrase_file = "{tmp_path}/p"'
    )
    assert _error(toml, tmp_path) == "set either e2ee.passphrase or e2ee.passphrase_file, not both"


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    message = _error("[livekit\nurl=", tmp_path)
    assert message.startswith(f"config file '{tmp_path}/c.toml': invalid TOML: ")


def test_missing_config_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^config file '/nonexistent.toml': not found$"):
        load_settings("/nonexistent.toml")


def test_cli_exits_2_with_one_line_on_bad_config(toml_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--config", str(toml_file), "--fps", "500"]) == 2
    err = capsys.readouterr().err
    assert err == "desktop-runner: configuration error: capture.fps: Input should be less than or equal to 120\n"


def test_cli_exits_2_with_one_line_on_bad_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["--monitor", "two"])
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        "desktop-runner: usage error: argument --monitor: invalid int value: 'two' (see --help)\n"
    )


def test_example_config_documents_every_key() -> None:
    text = (REPO / "config" / "desktop-runner.toml").read_text()
    data = tomllib.loads(text)
    sections: dict[str, type[BaseModel]] = {"livekit": LiveKitSettings, "e2ee": E2EESettings,
                                            "capture": CaptureSettings, "encoder": EncoderSettings,
                                            "log": LogSettings, "audio": AudioSettings}
    for name, model in sections.items():
        for key in model.model_fields:
            present = key in data.get(name, {}) or re.search(rf"^# {key} = ", text, re.M)
            assert present, f"config/desktop-runner.toml lacks {name}.{key}"


def test_example_config_defaults_match_code() -> None:
    data = tomllib.loads((REPO / "config" / "desktop-runner.toml").read_text())
    models: dict[str, type[BaseModel]] = {"e2ee": E2EESettings, "capture": CaptureSettings,
                                          "encoder": EncoderSettings, "log": LogSettings,
                                          "audio": AudioSettings}
    for name, model in models.items():
        defaults = model.model_construct()
        for key, value in data[name].items():
            assert getattr(defaults, key) == value, f"{name}.{key}"


def test_the_pointer_is_the_viewers_by_default_and_old_booleans_keep_their_meaning(
        toml_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(toml_file).capture.cursor == "viewer"
    assert load_settings(toml_file, {"capture": {"cursor": True}}).capture.cursor == "picture"
    assert load_settings(toml_file, {"capture": {"cursor": False}}).capture.cursor == "none"
    monkeypatch.setenv("RUNNER_CAPTURE__CURSOR", "picture")
    assert load_settings(toml_file).capture.cursor == "picture"
    monkeypatch.setenv("RUNNER_CAPTURE__CURSOR", "true")
    assert load_settings(toml_file).capture.cursor == "picture"


def test_an_unknown_pointer_mode_is_one_line_naming_the_setting(toml_file: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(toml_file, {"capture": {"cursor": "browser"}})
    assert "capture.cursor" in str(info.value) and "\n" not in str(info.value)


def test_audio_defaults_capture_the_default_monitor_and_keep_the_microphone_off(toml_file: Path) -> None:
    audio = load_settings(toml_file).audio
    assert (audio.enabled, audio.source, audio.server, audio.muted, audio.microphone) == (
        True, None, None, False, False)
    assert audio.microphone_source == "desktop_runner_mic"


def test_audio_settings_from_the_environment(toml_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_AUDIO__ENABLED", "false")
    monkeypatch.setenv("RUNNER_AUDIO__MICROPHONE", "true")
    monkeypatch.setenv("RUNNER_AUDIO__SERVER", "unix:/run/user/1000/pulse/native")
    audio = load_settings(toml_file).audio
    assert (audio.enabled, audio.microphone, audio.server) == (False, True, "unix:/run/user/1000/pulse/native")


def test_a_microphone_source_name_pulse_would_misread_is_refused_in_one_line(
        toml_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_AUDIO__MICROPHONE_SOURCE", "mic source=evil")
    with pytest.raises(ConfigError) as error:
        load_settings(toml_file)
    assert str(error.value).startswith("audio.microphone_source: String should match pattern")
