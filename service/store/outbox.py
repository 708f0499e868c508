"""Reading and acknowledging the outbox, on the relay leader's own connection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.store.errors import translated
from service.store.queries import q
from service.store.records import OutboxMessage

if TYPE_CHECKING:
    from service.store.migrations import Connection


@dataclass
class OutboxReader:
    conn: Connection

    async def unsent(self, limit: int) -> list[OutboxMessage]:
        """The oldest events not yet published."""
        with translated():
            rows = await self.conn.fetch(q("unsent_outbox"), limit)
        return [OutboxMessage(**dict(row)) for row in rows]

    async def mark_sent(self, ids: Sequence[int]) -> None:
        with translated():
            await self.conn.execute(q("mark_outbox_sent"), list(ids))
