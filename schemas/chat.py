"""The body of a ``/v1/chat/completions`` request as users bring it, and the limits every path applies to it.

ThinkRoute forwards the body to the LLM unchanged (the inference worker sets ``model``, ``stream: false``
and the reasoning switch, and keeps ``metadata`` to itself). Every request field of OpenAI's chat
completions API is modelled; a field it does not have is refused, naming it, rather than passed on: a typo
(``max_token``) would otherwise be dropped by the backend without a word, and the answer would not be the
one asked for. Fields that cannot work in a batch, or that ThinkRoute sets itself, are refused with the
reason (``REFUSED``). Content parts other than text (images, audio, files), tool definitions,
``response_format`` and the like are JSON values passed through as they are: the backend validates them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, Self

from pydantic import Field, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from schemas.content import (
    PARTS_BY_ROLE,
    AudioPart,
    ContentPart,
    FilePart,
    Finite,
    FunctionToolCall,
    ImagePart,
    JsonObject,
    RefusalPart,
    TextPart,
    ToolCall,
)

Role = Literal["system", "developer", "user", "assistant", "tool"]


class ChatMessage(Finite):
    """One message of any role, in one model; what each role may carry is checked after the fields.

    ``content`` is a string or a list of parts (system, developer and tool: text parts; user: text, image,
    audio, file; assistant: text, refusal). Only an assistant message may go without content, when it has
    ``tool_calls`` (or ``audio``); only it has ``tool_calls``, ``refusal`` and ``audio``; a tool message
    answers ``tool_call_id`` and has no ``name``.
    """

    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = Field(default=None, description="assistant only")
    tool_call_id: str | None = Field(default=None, description="tool only (required there)")
    refusal: str | None = Field(default=None, description="assistant only")
    audio: JsonObject | None = Field(default=None, description='assistant only: ``{"id": ...}`` of an earlier answer')

    @model_validator(mode="after")
    def _fits_its_role(self) -> Self:
        role = self.role
        if self.content is None and not (role == "assistant" and (self.tool_calls or self.audio)):
            need = "content or tool_calls" if role == "assistant" else "content"
            raise _refusal(f"{_a(role)} message needs {need}")
        for part in self.content if isinstance(self.content, list) else ():
            if part.type not in PARTS_BY_ROLE[role]:
                raise _refusal(f"{_a(role)} message cannot have {part.type} parts")
        if role != "assistant":
            for field in ("tool_calls", "refusal", "audio"):
                if getattr(self, field) is not None:
                    raise _refusal(f"{field} belongs to assistant messages, not to {role} ones")
        if (role == "tool") != (self.tool_call_id is not None):
            raise _refusal(
                "a tool message needs tool_call_id" if role == "tool" else "tool_call_id is for tool messages"
            )
        if role == "tool" and self.name is not None:
            raise _refusal("a tool message has no name")
        return self

    def text(self) -> str:
        """The text of ``content``: the string, or its text parts joined by newlines; "" when it has none."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content or () if isinstance(p, TextPart))

    def strings(self) -> Iterator[str]:
        """Every text of the message the model reads: content, refusals, tool-call arguments."""
        if isinstance(self.content, str):
            yield self.content
        for part in self.content if isinstance(self.content, list) else ():
            if isinstance(part, TextPart):
                yield part.text
            elif isinstance(part, RefusalPart):
                yield part.refusal
        if self.refusal is not None:
            yield self.refusal
        for call in self.tool_calls or ():
            yield call.function.arguments if isinstance(call, FunctionToolCall) else call.custom.input

    def has_media(self) -> bool:
        """It has an image, audio or file part (or earlier audio): content that is not text."""
        parts = self.content if isinstance(self.content, list) else []
        return self.audio is not None or any(isinstance(p, ImagePart | AudioPart | FilePart) for p in parts)


REASONING_SWITCH: Final = "is set by ThinkRoute from the routing decision (the reasoning switch); remove it"
REFUSED: Final[dict[str, str]] = {
    "stream_options": "goes with stream, which a batch line cannot use (its answer comes whole); remove it",
    "reasoning_effort": REASONING_SWITCH,
    "chat_template_kwargs": REASONING_SWITCH,
    "functions": "is deprecated by OpenAI and not served by the backend; use tools",
    "function_call": "is deprecated by OpenAI and not served by the backend; use tool_choice",
}
"""Body fields refused with their reason when set (a null one is dropped)."""


class ChatBody(Finite):
    """The body of one ``/v1/chat/completions`` request: OpenAI's request fields, forwarded unchanged.

    ``model`` may be omitted: the routing policy's target model is used (and replaces a given one).
    ``stream`` may only be false. Given ``Limits`` in the validation context (``Limits.context()``), the body is
    also held to them; every body must have some text or media.
    """

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, description="deprecated by OpenAI for max_completion_tokens")
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1, le=128, description="answers to generate")
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, Annotated[int, Field(ge=-100, le=100)]] | None = Field(
        default=None, description="token id (as a string) to bias"
    )
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: JsonObject | None = Field(default=None, description="text, json_object or json_schema")
    tools: list[JsonObject] | None = None
    tool_choice: Literal["none", "auto", "required"] | JsonObject | None = None
    parallel_tool_calls: bool | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    audio: JsonObject | None = Field(default=None, description="audio output parameters")
    prediction: JsonObject | None = Field(default=None, description="predicted output")
    web_search_options: JsonObject | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    service_tier: str | None = None
    store: bool | None = None
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=16, description="kept by ThinkRoute, not sent to the LLM"
    )
    user: str | None = Field(default=None, description="deprecated by OpenAI for safety_identifier/prompt_cache_key")
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    stream: Literal[False] | None = Field(default=None, description="false or absent: a batch answer comes whole")

    @model_validator(mode="before")
    @classmethod
    def _refuse(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if data.get("stream") is True:
            raise _refusal("stream: a batch line's answer comes whole, it cannot be streamed; remove stream")
        if REFUSED.keys().isdisjoint(data):
            return data
        for field, why in REFUSED.items():
            if data.get(field) is not None:
                raise _refusal(f"{field} {why}")
        return {k: v for k, v in data.items() if k not in REFUSED}

    @model_validator(mode="after")
    def _within_limits(self, info: ValidationInfo) -> Self:
        # ``not s.isspace()`` stops at the first letter where ``s.strip()`` would copy a long prompt
        if not any(s and not s.isspace() for m in self.messages for s in m.strings()) and not any(
            m.has_media() for m in self.messages
        ):
            raise _refusal("empty prompt")
        limits = info.context.get("limits") if isinstance(info.context, dict) else None
        if isinstance(limits, Limits):
            limits.check(self)
        return self

    def chars(self) -> int:
        """Characters of text in the whole conversation (``ChatMessage.strings``): what ``max_prompt_chars`` caps."""
        return sum(len(s) for m in self.messages for s in m.strings())


@dataclass(frozen=True)
class Limits:
    """The caps on a request, the same on every path: `thinkroute submit`'s reader and the router's intake.

    ``max_prompt_chars`` caps ``ChatBody.chars`` (text only: media parts are bounded by the broker's message
    size); ``max_tokens`` caps ``max_tokens`` and ``max_completion_tokens`` (``None``: no cap). Handed to
    validation as its context: ``Model.model_validate(data, context=limits.context())``.
    """

    max_prompt_chars: int
    max_tokens: int | None = None

    def context(self) -> dict[str, Any]:
        return {"limits": self}

    def check(self, body: ChatBody) -> None:
        size = body.chars()
        if size > self.max_prompt_chars:
            raise _refusal(f"prompt of {size} characters is over the limit of {self.max_prompt_chars}")
        for field in ("max_tokens", "max_completion_tokens"):
            asked = getattr(body, field)
            if self.max_tokens is not None and asked is not None and asked > self.max_tokens:
                raise _refusal(f"{field} {asked} is over the limit of {self.max_tokens}")


def _a(role: str) -> str:
    return f"an {role}" if role == "assistant" else f"a {role}"


def _refusal(message: str) -> PydanticCustomError:
    return PydanticCustomError("refused", message)
