"""Control messages at the trust boundary: pydantic models for every input message and RPC
parameter set of docs/protocol.md. Anything that does not validate is dropped as ``schema``.

Only authenticated bodies reach these parsers (the envelope comes first); they still assume
the sender is careless or hostile: sizes, ranges and list lengths are all bounded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, TypeAdapter, ValidationError

MAX_INPUT_ENVELOPE_BYTES = 4096
# Input bodies are padded with spaces to the first of these sizes they fit, so an envelope's
# length tells the server which of three classes a message is, not which key it carries. The
# largest is what the 4096-byte envelope leaves after its 32-byte header and 16-byte tag.
INPUT_PAD_SIZES = (256, 1024, MAX_INPUT_ENVELOPE_BYTES - 32 - 16)
RELIABLE_KINDS = frozenset({"button", "wheel", "key", "text", "held", "reset"})
MAX_RPC_PAYLOAD_CHARS = 128 * 1024
MAX_TEXT_CHARS = 1024
MAX_HELD_KEYS = 32
MAX_CLIPBOARD_BYTES = 65536
MAX_ID_CHARS = 64
MAX_CODE_CHARS = 32
MAX_KEY_CHARS = 32

Button = Literal["left", "middle", "right", "back", "forward"]
Modifier = Literal["Shift", "Control", "Alt", "Meta", "AltGraph", "CapsLock"]
MAX_INT_DIGITS = 20  # no field needs more; Python refuses to convert past 4300 anyway

# strict: JSON true/false are never numbers (pydantic's lax mode reads true as 1.0)
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False, strict=True)]
Notches = Annotated[float, Field(allow_inf_nan=False, strict=True)]
Int16 = Annotated[int, Field(ge=-32768, le=32767, strict=True)]
MonitorId = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]
Ordinal = Annotated[int, Field(ge=1, le=2**53 - 1, strict=True)]  # JSON-safe in every language


class SchemaError(ValueError):
    """A body that is not valid JSON or not a valid message; the text names the field, not the content."""


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


M = TypeVar("M", bound=_Msg)


class Move(_Msg):
    t: Literal["move"]
    mon: MonitorId
    x: Unit
    y: Unit


class Rel(_Msg):
    t: Literal["rel"]
    dx: Int16
    dy: Int16


class Ordered(_Msg):
    """A reliable input message: ``o`` numbers the session's reliable messages 1, 2, 3, ... with no
    gap (docs/protocol.md, "Order"); pointer moves are lossy and carry none."""

    o: Ordinal


class ButtonMsg(Ordered):
    t: Literal["button"]
    button: Button
    down: StrictBool
    mon: MonitorId | None = None
    x: Unit | None = None
    y: Unit | None = None


class Wheel(Ordered):
    t: Literal["wheel"]
    dx: Notches = 0.0
    dy: Notches = 0.0


class Key(Ordered):
    t: Literal["key"]
    code: Annotated[str, Field(max_length=MAX_CODE_CHARS)]
    key: Annotated[str, Field(max_length=MAX_KEY_CHARS)]
    down: StrictBool
    mods: Annotated[list[Modifier], Field(max_length=6)] = []


class Text(Ordered):
    t: Literal["text"]
    text: Annotated[str, Field(max_length=MAX_TEXT_CHARS)]


class HeldMsg(Ordered):
    t: Literal["held"]
    keys: Annotated[list[Annotated[str, Field(max_length=MAX_CODE_CHARS)]], Field(max_length=MAX_HELD_KEYS)] = []
    buttons: Annotated[list[Button], Field(max_length=5)] = []


class Reset(Ordered):
    t: Literal["reset"]


InputMessage = Move | Rel | ButtonMsg | Wheel | Key | Text | HeldMsg | Reset
_INPUT: TypeAdapter[InputMessage] = TypeAdapter(Annotated[InputMessage, Field(discriminator="t")])


def _describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "message"
    return f"{where}: {err['msg']}"  # pydantic messages name the rule, never the offending value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise SchemaError(f"a number in the body has more than {MAX_INT_DIGITS} digits")
    return int(text)


def parse_json(body: bytes) -> object:
    try:
        return json.loads(body, parse_int=_bounded_int)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise SchemaError("body is not UTF-8 JSON") from None


def encode_input(message: Mapping[str, object], ordinal: int | None = None) -> bytes:
    """The body of an input envelope: compact JSON with ``o`` = ``ordinal`` for reliable kinds,
    padded with spaces to an INPUT_PAD_SIZES size (the viewer's side of docs/protocol.md)."""
    if message.get("t") in RELIABLE_KINDS:
        if ordinal is None:
            raise ValueError(f"a {message.get('t')} message needs its ordinal")
        message = {**message, "o": ordinal}
    raw = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    size = next((n for n in INPUT_PAD_SIZES if len(raw) <= n), None)
    if size is None:
        raise ValueError(f"input message of {len(raw)} bytes exceeds {INPUT_PAD_SIZES[-1]}")
    return raw + b" " * (size - len(raw))


def parse_input(body: bytes) -> InputMessage:
    data = parse_json(body)
    if not isinstance(data, dict):
        raise SchemaError("input message is not a JSON object")
    try:
        return _INPUT.validate_python(data)
    except ValidationError as exc:
        raise SchemaError(_describe(exc)) from None


# --- RPC parameters ----------------------------------------------------------------------------


class NoParams(_Msg):
    pass


class HelloParams(_Msg):
    nonce: Annotated[str, Field(min_length=16, max_length=64)]
    client: Annotated[str, Field(max_length=128)] = ""


class PingParams(_Msg):
    t: Annotated[float, Field(allow_inf_nan=False, strict=True)] = 0.0


class SelectMonitorParams(_Msg):
    id: MonitorId


class QualityParams(_Msg):
    fps: Annotated[float, Field(ge=1, le=60, allow_inf_nan=False, strict=True)] | None = None
    bitrate: Annotated[int, Field(ge=50_000, le=200_000_000, strict=True)] | None = None
    max_width: Annotated[int, Field(ge=0, le=16384, strict=True)] | None = None
    max_height: Annotated[int, Field(ge=0, le=16384, strict=True)] | None = None


class FitParams(_Msg):
    """dr.screen.fit: the viewer's picture area in device pixels and its device pixel ratio."""

    width: Annotated[int, Field(ge=1, le=16384, strict=True)]
    height: Annotated[int, Field(ge=1, le=16384, strict=True)]
    scale: Annotated[float, Field(ge=0.1, le=10, allow_inf_nan=False, strict=True)] = 1.0


class ClipboardSetParams(_Msg):
    text: str

    def model_post_init(self, _context: object) -> None:
        if len(self.text.encode("utf-8", "surrogatepass")) > MAX_CLIPBOARD_BYTES:
            raise ValueError(f"clipboard text is longer than {MAX_CLIPBOARD_BYTES} bytes")


RpcParams = _Msg  # the base of every RPC parameter model


def parse_params(model: type[M], body: bytes) -> M:
    data = parse_json(body)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SchemaError("params are not a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SchemaError(_describe(exc)) from None
    except ValueError as exc:
        raise SchemaError(str(exc)) from None
