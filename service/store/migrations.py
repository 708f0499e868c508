"""Schema migrations: numbered SQL files applied in order, once, under an advisory lock.

Each file is ``NNNN_description.sql``. All pending files are applied in one transaction that
holds ``pg_advisory_xact_lock``: a second process starting at the same time waits, then finds
nothing left to do. A file that changed after it was applied is refused (its checksum differs).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from service.errors import MigrationError
from service.observability import get_logger
from service.packaged import packaged_dir
from service.store.queries import q

if TYPE_CHECKING:
    from typing import TypeAlias

    Connection: TypeAlias = (
        asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
    )

# "trib" in ASCII: the key of the migration lock, shared by every Tributary process.
MIGRATION_LOCK_KEY = 0x74726962
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or packaged_dir("migrations")
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_description.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path}: version {version} is used by two files")
        found[version] = Migration(version, match.group(2), path.read_text(encoding="utf-8"))
    return [found[version] for version in sorted(found)]


async def apply_migrations(
    conn: Connection, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Bring the schema up to date; return what this call applied."""
    migrations = discover_migrations() if migrations is None else migrations
    applied_now: list[Migration] = []
    async with conn.transaction():
        await conn.execute(q("lock_migrations"), MIGRATION_LOCK_KEY)
        await conn.execute(q("create_migrations_table"))
        applied = {row["version"]: row for row in await conn.fetch(q("applied_migrations"))}
        known = {migration.version for migration in migrations}
        unknown = sorted(set(applied) - known)
        if unknown:
            raise MigrationError(
                f"the database has migrations {unknown} that this code does not know: "
                "it was migrated by a newer release"
            )
        for migration in migrations:
            row = applied.get(migration.version)
            if row is not None:
                if row["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name}.sql was changed "
                        f"after it was applied (checksum {row['checksum'][:12]}… in the database, "
                        f"{migration.checksum[:12]}… on disk): add a new migration instead"
                    )
                continue
            try:
                await conn.execute(migration.sql)
            except asyncpg.PostgresError as exc:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name}.sql failed: {exc}"
                ) from exc
            await conn.execute(
                q("record_migration"), migration.version, migration.name, migration.checksum
            )
            applied_now.append(migration)
    for migration in applied_now:
        log.info("migration.applied", version=migration.version, name=migration.name)
    return applied_now
