"""Configuration: one validated object, built before anything starts.

Sources, lowest to highest precedence: defaults < TOML file (``--config PATH`` or
``RUNNER_CONFIG_FILE``) < environment (``RUNNER_`` prefix, ``__`` between levels, e.g.
``RUNNER_LIVEKIT__URL``) < command-line flags.

Every secret is a ``SecretStr`` and has a ``*_file`` twin (systemd credentials, Docker
secrets). Error messages produced here name the key and never echo a value.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "RUNNER_"
ENV_NESTED_DELIMITER = "__"
CONFIG_FILE_ENV = "RUNNER_CONFIG_FILE"

FrameEngine = Literal["runner", "sdk"]
"""Who encrypts video frames: the runner (runner.e2ee) or the LiveKit SDK's frame cryptor."""

CursorMode = Literal["viewer", "picture", "none"]
"""Where the mouse pointer is shown: pushed to viewers, who draw it (``viewer``), drawn into the
picture (``picture``), or nowhere (``none``)."""
# capture.cursor was a boolean before the viewer drew the pointer; those values keep their meaning.
_CURSOR_BOOLEANS = {True: "picture", False: "none", "true": "picture", "false": "none"}


class ConfigError(Exception):
    """A configuration problem the user can fix; ``str()`` is one line naming the key."""


def _read_secret_file(path: Path, key: str) -> SecretStr:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {key} {str(path)!r}: {exc.strerror or exc}") from None
    value = text.rstrip("\r\n")
    if not value:
        raise ValueError(f"{key} {str(path)!r} is empty")
    return SecretStr(value)


def _resolve_secret(model: BaseModel, name: str, section: str) -> None:
    """Fill ``name`` from ``name_file`` when the file form is given; both at once is an error."""
    file_value: Path | None = getattr(model, f"{name}_file")
    if file_value is None:
        return
    if getattr(model, name) is not None:
        raise ValueError(f"set either {section}.{name} or {section}.{name}_file, not both")
    object.__setattr__(model, name, _read_secret_file(file_value, f"{section}.{name}_file"))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        # `RUNNER_E2EE__PASSPHRASE=` (empty) means "not set", as in most env-file tooling.
        field = cls.model_fields[info.field_name] if info.field_name else None
        if value == "" and field is not None and field.default is None:
            return None
        return value


class LiveKitSettings(_Section):
    url: str | None = Field(None, description="LiveKit server URL, ws://, wss://, http:// or https://")
    api_key: str | None = None
    api_secret: SecretStr | None = None
    api_secret_file: Path | None = None
    token: SecretStr | None = Field(None, description="a ready access token, instead of key/secret")
    token_file: Path | None = None
    room: str = Field("desktop", min_length=1, max_length=256)
    identity: str = Field("desktop-runner", min_length=1, max_length=256)
    name: str = Field("Desktop", max_length=256, description="participant display name")
    token_ttl_s: int = Field(3600, ge=60, le=86400, description="lifetime of minted tokens")
    connect_timeout_s: float = Field(10.0, gt=0, le=120)
    zero_playout_delay: bool = Field(
        True,
        description="before joining, set the room's playout delay to zero (needs api_key/api_secret): "
        "Chrome then shows each frame as it is decoded",
    )
    retry_initial_s: float = Field(1.0, gt=0, le=60)
    retry_max_s: float = Field(30.0, gt=0, le=3600)
    on_fatal: Literal["retry", "exit"] = Field(
        "retry", description="after duplicate identity, removal or room deletion: back off and retry, or exit 3"
    )

    @model_validator(mode="after")
    def _credentials(self) -> LiveKitSettings:
        _resolve_secret(self, "api_secret", "livekit")
        _resolve_secret(self, "token", "livekit")
        if self.url is not None:
            parsed = urlparse(self.url)
            if parsed.scheme not in ("ws", "wss", "http", "https") or not parsed.netloc:
                raise ValueError("livekit.url must look like ws://host:port or wss://host")
        return self


class E2EESettings(_Section):
    passphrase: SecretStr | None = Field(None, description="shared E2EE passphrase (JS setKey(string))")
    passphrase_file: Path | None = None
    # JS key rings hold 16 keys and look a received index up without wrapping it.
    key_index: int = Field(0, ge=0, le=15)
    frame_engine: FrameEngine = "runner"

    @model_validator(mode="after")
    def _secret(self) -> E2EESettings:
        _resolve_secret(self, "passphrase", "e2ee")
        return self


class CaptureSettings(_Section):
    display: str | None = Field(None, description="X display, default $DISPLAY")
    monitor: int = Field(1, ge=0, le=64, description="mss monitor index: 1 = first, 0 = all combined")
    fps: float = Field(30.0, gt=0, le=120)
    cursor: CursorMode = Field(
        "viewer", description="viewer: pushed to viewers, who draw it; picture: drawn into the picture; none")
    skip_unchanged: bool = Field(True, description="grab and encode only when the screen changed (XDamage)")
    idle_refresh_s: float = Field(1.0, ge=0.02, le=5.0, description="with skip_unchanged, a still screen is "
                                  "sent again this often (a skip picture)")
    resizable: bool = Field(False, description="the runner owns this X server: the controlling viewer may "
                            "resize its screen to fit its window (dr.screen.fit, RandR)")

    @field_validator("cursor", mode="before")
    @classmethod
    def _cursor_boolean(cls, value: Any) -> Any:
        key = value.strip().lower() if isinstance(value, str) else value
        return _CURSOR_BOOLEANS.get(key, value) if isinstance(key, (bool, str)) else value


class EncoderSettings(_Section):
    codec: Literal["auto", "libx264", "h264_nvenc", "h264_qsv", "h264_vaapi"] = Field(
        "auto", description="auto: the first hardware encoder that works, else libx264")
    bitrate: int = Field(4_000_000, ge=100_000, le=100_000_000, description="start bitrate, bit/s")
    min_bitrate: int = Field(300_000, ge=50_000, le=100_000_000)
    max_bitrate: int = Field(12_000_000, ge=100_000, le=200_000_000)
    preset: Literal[
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium"
    ] = "ultrafast"
    threads: int = Field(0, ge=0, le=64, description="0 = libx264 picks")
    slices: int = Field(1, ge=1, le=4, description="Chromium decodes at most 4 slices per frame")
    keyframe_interval_s: float = Field(300.0, ge=1, le=86400, description="safety IDR interval")
    profile: Literal["baseline", "high"] = Field(
        "baseline", description="libx264's H.264 profile: baseline (what LiveKit negotiates) or high (opt-in)")

    @model_validator(mode="after")
    def _bounds(self) -> EncoderSettings:
        if not self.min_bitrate <= self.bitrate <= self.max_bitrate:
            raise ValueError("encoder.bitrate must lie within encoder.min_bitrate..encoder.max_bitrate")
        return self


class ControlSettings(_Section):
    enabled: bool = Field(True, description="accept authenticated input and RPC from viewers")
    view_only: bool = Field(False, description="refuse all input; viewers only watch")
    allowed_identities: list[str] = Field(
        default_factory=list, max_length=256, description="who may take control; empty = any key holder"
    )
    heartbeat_timeout_s: float = Field(2.0, ge=0.5, le=30, description="release held keys/buttons not refreshed")
    max_input_rate: int = Field(500, ge=10, le=10_000, description="input messages per second per viewer")


class ClipboardSettings(_Section):
    mode: Literal["off", "to-host", "from-host", "both"] = "off"


class AudioSettings(_Section):
    enabled: bool = Field(True, description="publish the host's desktop audio (an Opus track, E2EE)")
    source: str | None = Field(
        None, min_length=1, max_length=256,
        description="Pulse source to capture; default: the monitor of the default sink (@DEFAULT_MONITOR@)")
    server: str | None = Field(
        None, min_length=1, max_length=1024,
        description="Pulse server, e.g. unix:/run/user/1000/pulse/native; default: $PULSE_SERVER, "
                    "else the session's socket")
    muted: bool = Field(False, description="publish the track muted (nothing captured is sent); SIGHUP applies it")
    microphone: bool = Field(False, description="play the controller's microphone into a virtual source")
    microphone_source: str = Field(
        "desktop_runner_mic", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
        description="name of the virtual microphone (Pulse source) host applications pick")


def parse_host_port(address: str) -> tuple[str, int]:
    """'127.0.0.1:9464', '[::1]:9464' or ':9464' (all interfaces) -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must look like host:port, e.g. 127.0.0.1:9464")
    return host.strip("[]") or "0.0.0.0", int(port)


class MetricsSettings(_Section):
    address: str | None = Field(None, description="host:port for /metrics and /healthz; unset = off")

    @model_validator(mode="after")
    def _address(self) -> MetricsSettings:
        if self.address is not None:
            try:
                parse_host_port(self.address)
            except ValueError as exc:
                raise ValueError(f"metrics.address {exc}") from None
        return self


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = "auto"
    status_interval_s: float = Field(10.0, ge=0, le=3600, description="0 disables the status line")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        validate_default=True,
    )

    # Without pydantic's mypy plugin, mypy takes Field(None, ...) for a field without a default,
    # so it reads these calls as missing arguments (every field has a default).
    livekit: LiveKitSettings = LiveKitSettings()  # type: ignore[call-arg]
    e2ee: E2EESettings = E2EESettings()  # type: ignore[call-arg]
    capture: CaptureSettings = CaptureSettings()  # type: ignore[call-arg]
    encoder: EncoderSettings = EncoderSettings()  # type: ignore[call-arg]
    control: ControlSettings = ControlSettings()  # type: ignore[call-arg]
    clipboard: ClipboardSettings = ClipboardSettings()
    audio: AudioSettings = AudioSettings()  # type: ignore[call-arg]
    metrics: MetricsSettings = MetricsSettings()  # type: ignore[call-arg]
    log: LogSettings = LogSettings()  # type: ignore[call-arg]

    @model_validator(mode="after")
    def _required(self) -> Settings:
        lk = self.livekit
        if lk.url is None:
            raise ValueError("livekit.url is required")
        if lk.token is None and (lk.api_key is None or lk.api_secret is None):
            raise ValueError(
                "livekit.api_key and livekit.api_secret (or livekit.token) are required"
            )
        if lk.token is not None and (lk.api_key is not None or lk.api_secret is not None):
            raise ValueError("set either livekit.token or livekit.api_key/api_secret, not both")
        if self.e2ee.passphrase is None:
            raise ValueError("e2ee.passphrase (or e2ee.passphrase_file) is required")
        return self

    def secrets(self) -> list[str]:
        """Every secret value in this configuration, for log redaction."""
        values = [self.livekit.api_secret, self.livekit.token, self.e2ee.passphrase]
        return [v.get_secret_value() for v in values if v is not None]


def _settings_class(config_file: Path | None) -> type[Settings]:
    """A Settings subclass whose sources put the TOML file below the environment."""

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if config_file is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
            return tuple(sources)

    _Loaded.__name__ = "Settings"
    return _Loaded


def _describe(error: ErrorDetails) -> str:
    loc = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{loc}: unknown setting"
    if error["type"] == "missing":
        return f"{loc}: required"
    # Messages raised by our validators already name their keys.
    if not loc or msg.startswith(loc.split(".")[0] + ".") or msg.startswith(("set either", "cannot read")):
        return msg
    return f"{loc}: {msg}"


def load_settings(config_file: Path | str | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build and validate the configuration, or raise ConfigError with a one-line message.

    ``config_file`` defaults to ``$RUNNER_CONFIG_FILE``; ``overrides`` are nested dicts from the
    command line and win over everything else.
    """
    if config_file is None and os.environ.get(CONFIG_FILE_ENV):
        config_file = os.environ[CONFIG_FILE_ENV]
    path = Path(config_file) if config_file is not None else None
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r}: not found")
        try:
            with path.open("rb") as fh:
                tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r}: invalid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"config file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        return _settings_class(path)(**(overrides or {}))
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        raise ConfigError("; ".join(_describe(e) for e in errors)) from None
