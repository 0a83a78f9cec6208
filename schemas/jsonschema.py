"""Generate the JSON Schema of every model into ``schemas/json`` (checked by a drift test)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.batch import BatchOutputLine, BatchRequestLine, SimplePromptLine
from schemas.messages import DeadLetter, PromptMessage, RoutedMessage
from schemas.outcomes import OutcomeRecord
from schemas.records import ExplorationRecord, FileRecord, JobMeta, JobTotals, RequestResult

JSON_DIR = Path(__file__).resolve().parent / "json"

MODELS: dict[str, type[BaseModel]] = {
    "batch_request_line": BatchRequestLine,
    "simple_prompt_line": SimplePromptLine,
    "batch_output_line": BatchOutputLine,
    "prompt_message": PromptMessage,
    "routed_message": RoutedMessage,
    "dead_letter": DeadLetter,
    "request_result": RequestResult,
    "job_meta": JobMeta,
    "job_totals": JobTotals,
    "exploration_record": ExplorationRecord,
    "outcome_record": OutcomeRecord,
    "file_record": FileRecord,
}


def render(model: type[BaseModel]) -> str:
    return json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"


def write_all(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, model in MODELS.items():
        path = directory / f"{name}.schema.json"
        path.write_text(render(model), encoding="utf-8")
        paths.append(path)
    return paths
