"""One poke of each kind of check, against real things: a command and its exit codes, a path
and its marker, a SQL query on PostgreSQL, a URL on a real HTTP server, and a time limit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from service.probes import Answer, poke
from tests.support import eventually, group_gone

Poke = Callable[..., Awaitable[Answer]]


@pytest.fixture
async def poked(database_url: str) -> AsyncIterator[Poke]:
    """``await poked(probe, seconds=…)``: one poke, with the test database named ``wh``."""
    async with aiohttp.ClientSession() as http:

        async def poked(probe: dict[str, object], seconds: float = 5.0) -> Answer:
            return await poke(probe, seconds=seconds, databases={"wh": database_url}, session=http)

        yield poked


def command(*argv: str, not_ready: tuple[int, ...] = (1,)) -> dict[str, object]:
    return {"kind": "command", "argv": list(argv), "not_ready_codes": list(not_ready)}


async def test_a_command_is_ready_not_yet_or_in_error_by_its_exit_code(
    poked: Poke,
) -> None:
    assert (await poked(command("true"))).ready
    not_yet = await poked(command("sh", "-c", "exit 3", not_ready=(3,)))
    assert (not_yet.ready, not_yet.error, not_yet.result) == (False, False, "not yet: exit 3")
    broken = await poked(command("sh", "-c", "echo no such table >&2; exit 2"))
    assert (broken.error, broken.result) == (True, "error: exit 2: no such table")
    missing = await poked(command("/nonexistent/check"))
    assert missing.error
    assert "cannot start '/nonexistent/check'" in missing.result
    shell = await poked(command("/bin/sh", "-c", "test 1 -eq 1 && true"))
    assert shell.ready


async def test_a_check_that_does_not_answer_in_time_is_an_error(
    poked: Poke, tmp_path: Path
) -> None:
    group = tmp_path / "group"
    slow = await poked(command("sh", "-c", f"echo $$ > {group}; sleep 30 & sleep 30"), seconds=0.3)
    assert (slow.error, slow.result) == (True, "error: no answer within 0.3s")
    leader = int(group.read_text())

    # The check and what it started in the background are killed with their group.
    await eventually(lambda: group_gone(leader), bool, 5, "the check's group to end")


async def test_a_path_is_ready_when_it_and_its_marker_exist(poked: Poke, tmp_path: Path) -> None:
    where = tmp_path / "dt=2026-11-21"
    probe = {"kind": "path", "path": f"file://{where}", "marker": "_SUCCESS"}
    assert (await poked(probe)).result == f"not yet: {where} does not exist"
    where.mkdir()
    assert (await poked(probe)).result == f"not yet: {where}/_SUCCESS does not exist"
    (where / "_SUCCESS").touch()
    assert (await poked(probe)).ready


async def test_a_query_is_ready_when_its_first_column_is_true(
    poked: Poke,
) -> None:
    def sql(query: str, database: str = "wh") -> dict[str, object]:
        return {"kind": "sql", "database": database, "sql": query}

    assert (await poked(sql("SELECT '2026-11-21'::date < current_date"))).ready
    assert (await poked(sql("SELECT false"))).result == "not yet: the query answered False"
    assert (await poked(sql("SELECT 1 WHERE false"))).result.startswith("not yet")
    bad = await poked(sql("SELECT * FROM no_such_table"))
    assert bad.error
    assert "no_such_table" in bad.result
    unknown = await poked(sql("SELECT true", database="lake"))
    assert unknown.result == (
        "error: no database 'lake' in the check_databases setting (known: wh)"
    )


async def test_a_url_is_ready_on_2xx_not_yet_on_404_and_in_error_otherwise(
    poked: Poke,
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["status"]))

    app = web.Application()
    app.router.add_get("/{status}", answer)
    async with TestServer(app, host="127.0.0.1") as server:

        def url(status: int) -> dict[str, object]:
            return {"kind": "url", "url": str(server.make_url(f"/{status}"))}

        assert (await poked(url(204))).ready
        not_yet = await poked(url(404))
        assert (not_yet.ready, not_yet.error) == (False, False)
        failing = await poked(url(503))
        assert failing.error
        assert failing.result.endswith("answered 503")
        address = url(200)
    gone = await poked(address)
    assert gone.error  # nobody listens any more
