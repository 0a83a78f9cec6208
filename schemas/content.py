"""What a chat message carries besides plain text: content parts and tool calls, JSON values passed through.

Images, audio and files are checked for their ``type`` and the object that goes with it, whose contents are
the backend's to validate. Every number in the request is finite, as JSON's are.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, ConfigDict, Discriminator, Field, JsonValue, Tag
from pydantic_core import PydanticCustomError

from schemas.base import Strict


def _finite(value: JsonValue) -> JsonValue:
    """Refuse NaN and infinities inside a JSON value: JSON has none (Python's parser and pydantic's take them)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise PydanticCustomError("finite_number", "Input should be a finite number")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


JsonObject = Annotated[dict[str, JsonValue], AfterValidator(_finite)]


class Finite(Strict):
    """Base of the request's models: numbers are finite, as in JSON (a NaN would reach the LLM as null)."""

    model_config = ConfigDict(allow_inf_nan=False)


class TextPart(Finite):
    type: Literal["text"]
    text: str


class RefusalPart(Finite):
    """An earlier refusal of the assistant's (assistant messages only)."""

    type: Literal["refusal"]
    refusal: str


class ImagePart(Finite):
    type: Literal["image_url"]
    image_url: JsonObject = Field(description='``{"url": ..., "detail": ...}``, passed through')


class AudioPart(Finite):
    type: Literal["input_audio"]
    input_audio: JsonObject = Field(description='``{"data": base64, "format": ...}``, passed through')


class FilePart(Finite):
    type: Literal["file"]
    file: JsonObject = Field(description='``{"file_data" | "file_id", "filename"}``, passed through')


def _type_of(value: Any) -> Any:
    return value.get("type") if isinstance(value, dict) else getattr(value, "type", None)


# Tagged by a function, not by ``Field(discriminator=...)``: the JSON Schema is then a plain ``oneOf``, which
# FastStream copies into the AsyncAPI document as it is (it rewrites a discriminator object).
ContentPart = Annotated[
    Annotated[TextPart, Tag("text")]
    | Annotated[RefusalPart, Tag("refusal")]
    | Annotated[ImagePart, Tag("image_url")]
    | Annotated[AudioPart, Tag("input_audio")]
    | Annotated[FilePart, Tag("file")],
    Discriminator(
        _type_of,
        custom_error_type="content_part",
        custom_error_message="a content part is an object of type text, image_url, input_audio, file or refusal",
    ),
]

PARTS_BY_ROLE: Final[dict[str, frozenset[str]]] = {
    "system": frozenset({"text"}),
    "developer": frozenset({"text"}),
    "tool": frozenset({"text"}),
    "user": frozenset({"text", "image_url", "input_audio", "file"}),
    "assistant": frozenset({"text", "refusal"}),
}


class FunctionCall(Finite):
    name: str
    arguments: str = Field(description="JSON text, as the model generated it")


class FunctionToolCall(Finite):
    id: str
    type: Literal["function"]
    function: FunctionCall


class CustomCall(Finite):
    name: str
    input: str


class CustomToolCall(Finite):
    id: str
    type: Literal["custom"]
    custom: CustomCall


ToolCall = Annotated[
    Annotated[FunctionToolCall, Tag("function")] | Annotated[CustomToolCall, Tag("custom")],
    Discriminator(
        _type_of,
        custom_error_type="tool_call",
        custom_error_message="a tool call is an object of type function or custom",
    ),
]
