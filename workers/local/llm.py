"""Which LLM server the embedded stack's workers talk to: its own replay server, or the user's.

With any of ``THINKROUTE_LLM_BASE_URL``, ``LLM_REASONING_BASE_URL``, ``LLM_DIRECT_BASE_URL`` or
``LLM_MODEL_URLS`` set (`Settings.external_llm`), the stack starts no replay server and hands those settings,
and ``LLM_API_KEY``, to its workers in their environment; each route then needs a URL (a ConfigError before
anything starts otherwise). `describe` is what the summary prints: the URLs without any user:password part,
never the key.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from workers.errors import ConfigError
from workers.settings import Settings

REPLAY = "replay"
EXTERNAL = "external"


def check_routes(s: Settings) -> None:
    """A user's LLM without a URL for one of the routes cannot answer that route's requests."""
    missing = [route for route, url in (("reasoning", s.reasoning_url()), ("direct", s.direct_url())) if not url]
    if missing:
        which = f"the {missing[0]} route has" if len(missing) == 1 else "the reasoning and direct routes have"
        raise ConfigError(
            f"{which} no LLM URL: set THINKROUTE_LLM_BASE_URL (or "
            f"THINKROUTE_LLM_{missing[0].upper()}_BASE_URL), or unset the LLM settings to use the replay server"
        )


def client_env(s: Settings, replay_url: str | None) -> dict[str, str]:
    """The LLM part of the environment printed for clients and given to workers (no key): the replay server's
    URL, or the user's settings as set."""
    if replay_url is not None:
        return {"THINKROUTE_LLM_BASE_URL": replay_url}
    env = {
        name: value
        for name, value in (
            ("THINKROUTE_LLM_BASE_URL", s.llm_base_url),
            ("THINKROUTE_LLM_REASONING_BASE_URL", s.llm_reasoning_base_url),
            ("THINKROUTE_LLM_DIRECT_BASE_URL", s.llm_direct_base_url),
        )
        if value
    }
    if s.llm_model_urls:
        env["THINKROUTE_LLM_MODEL_URLS"] = json.dumps(s.llm_model_urls)
    return env


def secret_env(s: Settings) -> dict[str, str]:
    """What only the workers get (by environment, never on a command line, never printed)."""
    return {"THINKROUTE_LLM_API_KEY": s.llm_api_key.get_secret_value()} if s.llm_api_key is not None else {}


def redact(url: str | None) -> str | None:
    """``url`` without a ``user:password@`` part."""
    if not url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def describe(s: Settings, replay_url: str | None) -> dict[str, Any]:
    """The summary's ``llm``: ``backend`` (replay | external), ``base_url``, the URL of each route and the
    per-model URLs, redacted; whether a key is sent (``api_key``: true/false), not the key."""
    if replay_url is not None:
        routes = {"reasoning": replay_url, "direct": replay_url}
        return {"backend": REPLAY, "base_url": replay_url, "routes": routes, "model_urls": {}, "api_key": False}
    return {
        "backend": EXTERNAL,
        "base_url": redact(s.llm_base_url),
        "routes": {"reasoning": redact(s.reasoning_url()), "direct": redact(s.direct_url())},
        "model_urls": {m: redact(u) for m, u in s.llm_model_urls.items()},
        "api_key": s.llm_api_key is not None,
    }
