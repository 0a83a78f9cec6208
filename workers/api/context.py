"""What the routes share: the settings, the store, the file index and storage, the keys, the intakes and the
planners (each a real one in ``serve``, fakes in the unit tests)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from starlette.requests import Request

from schemas.records import FileRecord
from workers.api.auth import Keys
from workers.api.metrics import ApiMetrics
from workers.api.savings import SavingsCache
from workers.files.storage import FileStorage
from workers.router.plan import PlanArgs
from workers.settings import Settings
from workers.store.files import FileIndex
from workers.store.jobstore import Store
from workers.submit.intake import Planner


class IntakeStarter(Protocol):
    @property
    def accepting(self) -> bool: ...

    def start(self, job_id: str, input_file: FileRecord, planner: Planner | None) -> None: ...


class PlannerFactory(Protocol):
    def for_batch(self, request: PlanArgs | None) -> Planner | None: ...


@dataclass
class ApiContext:
    settings: Settings
    store: Store
    index: FileIndex
    storage: FileStorage
    keys: Keys
    intakes: IntakeStarter
    planners: PlannerFactory
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    savings: SavingsCache = field(default_factory=SavingsCache)
    clock: Callable[[], float] = time.time


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


def owner(request: Request) -> str:
    """The caller's owner name (``workers.api.middleware`` put it there for every ``/v1`` route)."""
    name: str = request.state.owner
    return name
