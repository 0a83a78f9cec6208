"""A terminal batch's savings report (``workers.submit.savings``: a bootstrap over its exploration sample),
computed once per batch and kept in memory: its figures no longer change, and pollers ask often."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from schemas.records import JobMeta, JobTotals
from workers.store.jobstore import Store
from workers.submit.jobs import savings_fields

KEEP = 1024  # batches whose report is kept (a few KB each)


class SavingsCache:
    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._reports: OrderedDict[str, asyncio.Task[dict[str, Any]]] = OrderedDict()

    async def get(self, store: Store, meta: JobMeta, totals: JobTotals) -> dict[str, Any]:
        """``{"savings", "savings_hint"}`` of a batch whose files are written; concurrent callers share one
        computation. A failed computation is not kept (the next call tries again)."""
        task = self._reports.get(meta.job_id)
        if task is None:
            task = asyncio.ensure_future(savings_fields(store, meta, totals))
            self._reports[meta.job_id] = task
            while len(self._reports) > self.keep:
                self._reports.popitem(last=False)
        else:
            self._reports.move_to_end(meta.job_id)
        try:
            return await asyncio.shield(task)
        except Exception:
            if self._reports.get(meta.job_id) is task:
                del self._reports[meta.job_id]
            raise
