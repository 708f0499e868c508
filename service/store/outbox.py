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

    async def mark_sent_and_read(self, sent: Sequence[int], limit: int) -> list[OutboxMessage]:
        """Mark the rows ``sent`` (published since the last read) and read the oldest events
        not yet published, in one statement."""
        with translated():
            rows = await self.conn.fetch(q("mark_sent_and_read_unsent"), list(sent), limit)
        return [OutboxMessage(**dict(row)) for row in rows]

    async def mark_sent(self, ids: Sequence[int]) -> None:
        with translated():
            await self.conn.execute(q("mark_outbox_sent"), list(ids))
