"""All configuration, read once from the environment (prefix ``THINKROUTE_``) in the entrypoints.

Inner code never reads the environment: the entrypoints hand these frozen models down as they are, and
every default and every value derived from them (``RouterSettings.batch_wait_s``, ``Settings.llm_url``,
``Settings.kafka_settings``, ...) is written here, once. Nested fields use ``__``:
``THINKROUTE_ROUTER__BATCH_MAX=64``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import topics

Family = Literal["qwen3", "deepseek", "gpt-oss", "none"]  # how a model family switches reasoning
HttpTransport = Literal["asyncio", "httpcore"]  # the LLM client's transport under httpx
FROZEN = ConfigDict(frozen=True)

DEFAULT_MODEL = "Qwen/Qwen3-30B-A3B"
# smollm: SmolLM2 (the llama.cpp test tier's model) has no reasoning switch
DEFAULT_FAMILIES: dict[str, Family] = {"qwen3": "qwen3", "deepseek": "deepseek", "gpt-oss": "gpt-oss", "smollm": "none"}


class Topics(BaseModel):
    """Defaults: the wire contract's names (``schemas.topics``, described in ``schemas/asyncapi.json``)."""

    model_config = FROZEN

    prompts: str = topics.PROMPTS
    reasoning: str = topics.REASONING
    direct: str = topics.DIRECT
    dead: str = topics.DEAD

    def routed(self) -> tuple[str, str]:
        """The topics the router publishes to and the inference workers read."""
        return (self.reasoning, self.direct)

    def for_route(self, route: str) -> str:
        return self.reasoning if route == "reasoning" else self.direct


class KafkaSecurity(BaseModel):
    """Passed to aiokafka as is; see README, Deployment."""

    model_config = FROZEN

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None


class KafkaSettings(BaseModel):
    """What every Kafka client is built from: ``Settings.kafka_settings()`` (bootstrap, security, session)."""

    model_config = FROZEN

    bootstrap: str
    security: KafkaSecurity = Field(default_factory=KafkaSecurity)
    session_timeout_ms: int = Field(ge=1000)  # its default is Settings.session_timeout_ms

    @property
    def heartbeat_interval_ms(self) -> int:
        return max(self.session_timeout_ms // 4, 250)

    def client_kwargs(self) -> dict[str, Any]:
        """Connection and security arguments shared by aiokafka's producer, consumer and admin client."""
        sec = self.security
        kw: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": sec.security_protocol}
        if sec.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            kw["ssl_context"] = create_ssl_context(
                cafile=str(sec.ssl_cafile) if sec.ssl_cafile else None,
                certfile=str(sec.ssl_certfile) if sec.ssl_certfile else None,
                keyfile=str(sec.ssl_keyfile) if sec.ssl_keyfile else None,
            )
        if sec.security_protocol.startswith("SASL"):
            kw["sasl_mechanism"] = sec.sasl_mechanism or "PLAIN"
            kw["sasl_plain_username"] = sec.sasl_username
            kw["sasl_plain_password"] = sec.sasl_password.get_secret_value() if sec.sasl_password else None
        return kw


class RouterSettings(BaseModel):
    model_config = FROZEN

    group: str = "thinkroute-router"
    batch_max: int = Field(default=64, ge=1, le=4096, description="flush a micro-batch at this size")
    batch_wait_ms: int = Field(default=20, ge=1, le=10_000, description="... or this long after its first prompt")
    depth: int = Field(default=2, ge=1, le=64, description="micro-batches being classified at once")
    max_pending: int = Field(
        default=0, ge=0, le=1_000_000, description="records held between fetch and commit; 0: 4 x batch_max"
    )
    fetch_max_wait_ms: int = Field(
        default=10, ge=1, le=5_000, description="longest the broker holds a fetch: bounds latency on quiet topics"
    )
    policy_path: Path | None = Field(default=None, description="YAML routing policy; default: the shipped table")
    policy_poll_s: float = Field(
        default=2.0, gt=0, le=3600, description="how often the router checks its policy file for a new version"
    )
    artifact_dir: Path | None = Field(default=None, description="pin a classifier artefact; default: the cached build")
    providers: Literal["auto", "cpu", "cuda"] = "auto"
    first_tier: bool = Field(
        default=True,
        description="the lexical first tier decides the prompts it is sure of (CPU only); false: the encoder for all",
    )
    intra_op_threads: int | None = Field(default=None, ge=1)
    metrics_port: int = Field(default=9400, ge=0, le=65535, description="Prometheus /metrics; 0 = off")

    @property
    def batch_wait_s(self) -> float:
        return self.batch_wait_ms / 1000

    @property
    def pending_limit(self) -> int:
        """Records held between fetch and commit: ``max_pending``, or 4 batches when it is 0."""
        return self.max_pending or 4 * self.batch_max

    @property
    def max_poll_records(self) -> int:
        return max(self.batch_max, 500)


class InferenceSettings(BaseModel):
    model_config = FROZEN

    group: str = "thinkroute-inference"
    concurrency: int = Field(default=64, ge=1, le=4096, description="LLM requests in flight per worker")
    max_attempts: int = Field(default=4, ge=1, le=20)
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=20.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=600.0, gt=0, description="one LLM call, thinking included")
    families: dict[str, Family] = Field(
        default_factory=lambda: dict(DEFAULT_FAMILIES),
        description="substring of the model name (lower case) -> how reasoning is switched",
    )
    default_family: Family = "qwen3"
    escalate_below: float | None = Field(
        default=None, ge=0, le=1, description="escalate direct answers less confident than this; unset: never"
    )
    escalate_topic: str | None = Field(default=None, description="topic of escalated requests; default: reasoning")
    escalate_model: str | None = Field(default=None, description="model of the escalated attempt; default: same")
    metrics_port: int = Field(default=9401, ge=0, le=65535, description="Prometheus /metrics; 0 = off")
    commit_interval_ms: int = Field(default=100, ge=0, le=60_000, description="least time between offset commits")
    http_transport: HttpTransport = Field(
        default="asyncio", description="LLM HTTP transport under httpx: asyncio protocols, or httpx's own httpcore"
    )
    fallback_base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL answering when a primary fails; unset: no fallback"
    )
    fallback_model: str | None = Field(default=None, description="model asked of the fallback; default: the same")
    fallback_api_key: SecretStr | None = Field(
        default=None, description="bearer token for the fallback; unset: none sent (LLM_API_KEY is not reused)"
    )
    fallback_max_attempts: int = Field(default=2, ge=1, le=20, description="attempts on the fallback per request")
    breaker_failures: int = Field(
        default=5, ge=1, le=10_000, description="consecutive transient failures that open a primary's breaker"
    )
    breaker_cooldown_s: float = Field(
        default=30.0, ge=0, le=86_400, description="open breaker: how long before one probe tries the primary"
    )

    @property
    def commit_interval_s(self) -> float:
        return self.commit_interval_ms / 1000


WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def window_seconds(window: str) -> float:
    """``24h`` -> 86400.0; a number and one unit of s, m, h, d. ValueError otherwise."""
    unit = window[-1:]
    if unit not in WINDOW_UNITS or not window[:-1].isdigit() or int(window[:-1]) <= 0:
        raise ValueError(f"not a completion window: {window!r} (a whole number and s, m, h or d, e.g. 24h)")
    return float(int(window[:-1]) * WINDOW_UNITS[unit])


class ApiSettings(BaseModel):
    """``thinkroute serve``: the OpenAI-compatible Files and Batches API (``THINKROUTE_API__*``)."""

    model_config = FROZEN

    host: str = Field(default="127.0.0.1", description="interface to listen on (0.0.0.0 in compose)")
    port: int = Field(default=8080, ge=0, le=65535, description="0: a free port (printed at start)")
    keys_file: Path | None = Field(
        default=None, description="API keys: lines `<owner> <sha256 hex of the key>` (`thinkroute api-key new`)"
    )
    keys: dict[str, str] = Field(
        default_factory=dict, description="API keys as JSON {sha256 hex of the key: owner}, beside keys_file"
    )
    files_dir: Path | None = Field(default=None, description="local file storage; default: <cache_dir>/files")
    files_url: str | None = Field(
        default=None, description="s3://bucket[/prefix]: an S3-compatible object store instead of files_dir"
    )
    s3_endpoint: str | None = Field(default=None, description="e.g. http://seaweedfs:8333; default: AWS")
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    max_file_bytes: int = Field(default=200 * 1024 * 1024, ge=1, description="largest upload (OpenAI: 200 MB)")
    max_file_lines: int = Field(default=50_000, ge=1, description="most requests in a batch file (OpenAI: 50,000)")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1, description="largest request body other than uploads")
    completion_windows: list[str] = Field(
        default_factory=lambda: ["24h"], description="windows a batch may ask for (shorter ones for tests)"
    )
    settle_s: float = Field(
        default=300.0, gt=0, description="after a cancel or expiry: how long answers in flight are waited for"
    )
    sweep_s: float = Field(default=1.0, gt=0, le=60, description="how often expiry and finalization are checked")
    intake_concurrency: int = Field(default=2, ge=1, le=64, description="batches validated and published at once")
    list_limit: int = Field(default=20, ge=1, le=100, description="GET /v1/batches without limit")
    metrics_port: int = Field(default=9402, ge=0, le=65535, description="Prometheus /metrics; 0 = off")

    def window_s(self, window: str) -> float:
        """Seconds of an allowed completion window; ValueError naming the allowed ones otherwise."""
        if window not in self.completion_windows:
            raise ValueError(f"completion_window must be one of {', '.join(self.completion_windows)}")
        return window_seconds(window)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="THINKROUTE_", env_nested_delimiter="__", extra="ignore", frozen=True)

    kafka_bootstrap: str | None = Field(default=None, description="unset: start the embedded stack")
    kafka: KafkaSecurity = Field(default_factory=KafkaSecurity)
    redis_url: SecretStr | None = Field(default=None, description="redis://[:password@]host:port/db")
    redis_cluster: bool = Field(default=False, description="REDIS_URL is one seed node of a Redis Cluster (db 0)")
    llm_base_url: str | None = Field(default=None, description="OpenAI-compatible base URL, e.g. http://vllm:8000/v1")
    llm_reasoning_base_url: str | None = Field(default=None, description="override for the reasoning route")
    llm_direct_base_url: str | None = Field(default=None, description="override for the direct route")
    llm_model_urls: dict[str, str] = Field(
        default_factory=dict, description="model name -> base URL (JSON), overrides the route's URL for that model"
    )
    llm_api_key: SecretStr | None = None
    default_model: str = DEFAULT_MODEL
    topics: Topics = Field(default_factory=Topics)
    partitions: int = Field(default=4, ge=1, description="partitions per topic when ThinkRoute creates them")
    router: RouterSettings = Field(default_factory=RouterSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "thinkroute")
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    max_prompt_chars: int = Field(default=200_000, ge=1, description="longer prompts are rejected (submit, router)")
    max_tokens: int | None = Field(default=32_768, ge=1, description="requests asking for more are rejected")
    log_level: str = "INFO"
    metrics_host: str = Field(default="0.0.0.0", description="interface the workers' /metrics listen on")
    crash_points: str | None = Field(default=None, description="fault-injection tests only, e.g. after_llm=3")

    @property
    def embedded(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def external_llm(self) -> bool:
        """An LLM URL is set: the embedded stack starts no replay server and its workers use these settings."""
        return bool(self.llm_base_url or self.llm_reasoning_base_url or self.llm_direct_base_url or self.llm_model_urls)

    def reasoning_url(self) -> str | None:
        return self.llm_reasoning_base_url or self.llm_base_url

    def direct_url(self) -> str | None:
        return self.llm_direct_base_url or self.llm_base_url

    def llm_url(self, route: str, model: str) -> str:
        """Base URL of one request: the model's own (``llm_model_urls``), else its route's."""
        url = self.llm_model_urls.get(model) or (self.reasoning_url() if route == "reasoning" else self.direct_url())
        if not url:
            raise ValueError(f"no LLM base URL for the {route} route: set THINKROUTE_LLM_BASE_URL")
        return url

    @property
    def escalation_topic(self) -> str:
        return self.inference.escalate_topic or self.topics.reasoning

    def kafka_settings(self) -> KafkaSettings:
        """The Kafka clients' settings. ``workers.kafka.clients.kafka_config`` wraps this for the entrypoints:
        a ConfigError (reported as a configuration mistake) when no broker is configured."""
        if self.kafka_bootstrap is None:
            raise ValueError("THINKROUTE_KAFKA_BOOTSTRAP is not set")
        return KafkaSettings(
            bootstrap=self.kafka_bootstrap, security=self.kafka, session_timeout_ms=self.session_timeout_ms
        )
