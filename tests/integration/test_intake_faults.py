"""Intake that never lies: a commit lost, late or failed, and a poisoned request in a batch.

Faults are injected around the real repository on the real database: the real statement
runs and commits, and then its answer is lost, or arrives late; or the connection fails
before it commits, or before anything is sent. A `201` must mean an order that exists and
executes once; a `503` must mean nothing was created.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, Literal, Self, cast
from uuid import UUID

import asyncpg
import pytest

import orderengine.app
from orderengine.domain import NewOrder, Order, OrderRequest
from orderengine.errors import BadRequest, DatabaseUnavailable, IdempotencyConflict
from orderengine.intake import Intake
from orderengine.keys import ENGINE, REPOSITORY
from orderengine.limiter import SubmitRate
from orderengine.postgres import AnyConnection, Connection, DedicatedConnection, create_pool
from orderengine.repository import Outcome, Repository
from orderengine.venues.chain import Chain
from tests.harness import Client, StartApp
from tests.polling import eventually
from tests.streams import MARKET, wait_terminal

Fault = Literal[
    "answer_lost",  # the statement runs and commits; its answer never comes back
    "answer_late",  # the statement commits after the client gave up on it
    "commit_unsent",  # the statement runs, and the connection fails before it commits
    "statement_unsent",  # the connection fails before the statement is sent
]
LATE_S = 0.5


class FaultyConnection:
    """A real connection, but the batch's statement meets `fault`.

    A statement is its own transaction. Its answer lost after it committed, and a commit that
    never comes (the connection dropped first, so the server rolls back), are played with
    the real statement; so is a late answer, by running the statement in a transaction that
    commits `LATE_S` later, holding its locks as a slow commit would.
    """

    def __init__(self, real: Any, fault: Fault) -> None:
        self.real = real
        self.fault = fault
        self.late: asyncio.Task[None] | None = None
        self.committed_at: float | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        if self.fault == "statement_unsent":
            raise ConnectionResetError("injected: the connection failed before the statement")
        if self.fault == "answer_lost":
            await self.real.fetch(query, *args)
            raise ConnectionResetError("injected: the answer to the committed statement was lost")
        transaction = self.real.transaction()
        await transaction.start()
        await self.real.fetch(query, *args)
        if self.fault == "commit_unsent":
            await transaction.rollback()  # what the server does when the client drops
            raise ConnectionResetError("injected: the connection failed before the commit")
        self.late = asyncio.create_task(self._commit_later(transaction))
        raise TimeoutError("injected: the statement was not answered in time")

    async def _commit_later(self, transaction: Any) -> None:
        await asyncio.sleep(LATE_S)
        await transaction.commit()
        self.committed_at = asyncio.get_running_loop().time()


class FaultyRepository(Repository):
    """The real repository; each `create_orders` takes the next of `faults`, if any.

    Each `create_orders` also waits for `gate` (open unless a test closes it) and records the
    size of its batch in `batches`.
    """

    faults: list[Fault | None]
    gate: asyncio.Event
    batches: list[int]
    read_back_outages: int
    """How many read-backs fail as if the database were down, before they are let through."""
    connections: list[FaultyConnection]
    dsn: str
    _armed: Fault | None = None

    @classmethod
    async def connect(cls, dsn: str, size: int, timeout_s: float) -> Self:
        repository = await super().connect(dsn, size, timeout_s)
        repository.dsn = dsn
        repository.faults = []
        repository.gate = asyncio.Event()
        repository.gate.set()
        repository.batches = []
        repository.read_back_outages = 0
        repository.connections = []
        return repository

    async def create_orders(
        self,
        batch: Sequence[NewOrder],
        ids: Sequence[UUID] | None = None,
        rate: SubmitRate | None = None,
    ) -> list[Outcome]:
        self.batches.append(len(batch))
        await self.gate.wait()
        self._armed = self.faults.pop(0) if self.faults else None
        return await super().create_orders(batch, ids, rate)

    async def created_orders(
        self, ids: Sequence[UUID], server_pid: int | None = None
    ) -> dict[UUID, Order]:
        if self.read_back_outages:
            self.read_back_outages -= 1
            raise DatabaseUnavailable("injected: database unavailable for the read-back")
        return await super().created_orders(ids, server_pid)

    @asynccontextmanager
    async def _intake_connection(self) -> AsyncIterator[AnyConnection]:
        fault, self._armed = self._armed, None
        if fault is None:
            async with super()._intake_connection() as connection:
                yield connection
            return
        if fault == "answer_late":
            # A connection of its own: it must outlive the call that gave up on it.
            faulty = FaultyConnection(await asyncpg.connect(self.dsn), fault)
            self.connections.append(faulty)
            yield cast(Connection, faulty)
            return
        async with super()._intake_connection() as connection:
            faulty = FaultyConnection(connection, fault)
            self.connections.append(faulty)
            yield cast(Connection, faulty)

    async def close(self) -> None:
        for faulty in self.connections:
            if faulty.late is not None:
                await faulty.late
            if faulty.fault == "answer_late":
                await faulty.real.close()
        await super().close()


@pytest.fixture
async def faulty_app(
    start_app: StartApp, monkeypatch: pytest.MonkeyPatch
) -> tuple[Client, FaultyRepository]:
    """The real app, opening a `FaultyRepository` instead of a `Repository`."""
    monkeypatch.setattr(orderengine.app, "Repository", FaultyRepository)
    client = await start_app()
    repository = client.app[REPOSITORY]
    assert isinstance(repository, FaultyRepository)
    return client, repository


async def _order_ids(repository: Repository) -> list[UUID]:
    orders, _ = await repository.list_orders(None, None, 200)
    return [order.order_id for order in orders]


async def _batches_are(repository: FaultyRepository, sizes: list[int]) -> bool:
    return repository.batches == sizes


async def _backlog_is(client: Client, size: int) -> bool:
    backlog: int = client.app[ENGINE].backlog
    return backlog == size


async def _executed_once(client: Client, chain: Chain, order_id: str) -> None:
    order = await wait_terminal(client, order_id)
    landed = await chain.landed_signatures([UUID(order_id)])
    assert order["status"] == "confirmed"
    assert landed[UUID(order_id)] == [order["txHash"]]


@pytest.mark.parametrize("fault", ["answer_lost", "answer_late"])
async def test_a_commit_whose_answer_is_lost_or_late_is_read_back_and_answered_201(
    faulty_app: tuple[Client, FaultyRepository], chain: Chain, fault: Fault
) -> None:
    client, repository = faulty_app
    repository.faults = [fault]
    headers = {"Idempotency-Key": f"lost-{fault}"}

    answer = await client.post("/api/orders/execute", json=MARKET, headers=headers)
    answered_at = asyncio.get_running_loop().time()
    body = await answer.json()
    again = await client.post("/api/orders/execute", json=MARKET, headers=headers)

    assert answer.status == 201, body
    assert (await again.json()) == body
    assert again.status == 200
    if fault == "answer_late":
        committed_at = repository.connections[0].committed_at
        assert committed_at is not None
        assert committed_at <= answered_at
    await _executed_once(client, chain, body["orderId"])
    assert await _order_ids(repository) == [UUID(body["orderId"])]


async def test_a_lost_commit_of_a_batch_answers_each_order_as_committed(
    faulty_app: tuple[Client, FaultyRepository], chain: Chain
) -> None:
    client, repository = faulty_app
    repository.faults = [None, "answer_lost"]
    repository.read_back_outages = 2
    repository.gate.clear()
    posts = [asyncio.create_task(client.post("/api/orders/execute", json=MARKET))]
    await eventually(lambda: _batches_are(repository, [1]))
    posts += [
        asyncio.create_task(client.post("/api/orders/execute", json=MARKET)) for _ in range(11)
    ]
    await eventually(lambda: _backlog_is(client, 12))
    repository.gate.set()

    answers = await asyncio.gather(*posts)
    bodies = [await answer.json() for answer in answers]

    assert repository.batches[:2] == [1, 11]
    assert [answer.status for answer in answers] == [201] * 12, bodies
    assert repository.read_back_outages == 0
    for body in bodies:
        await _executed_once(client, chain, body["orderId"])
    assert sorted(await _order_ids(repository)) == sorted(UUID(b["orderId"]) for b in bodies)


@pytest.mark.parametrize("fault", ["commit_unsent", "statement_unsent"])
async def test_a_commit_that_failed_answers_503_and_creates_nothing(
    faulty_app: tuple[Client, FaultyRepository], fault: Fault
) -> None:
    client, repository = faulty_app
    repository.faults = [fault]

    refused = await client.post("/api/orders/execute", json=MARKET)
    error = (await refused.json())["error"]
    created_before_retry = await _order_ids(repository)
    retried = await client.post("/api/orders/execute", json=MARKET)

    assert refused.status == 503
    assert refused.headers["Retry-After"].isdigit()
    assert error["code"] == "database_unavailable"
    assert created_before_retry == []
    assert retried.status == 201
    assert await _order_ids(repository) == [UUID((await retried.json())["orderId"])]


async def _raw_post(client: Client, idempotency_key: bytes) -> tuple[int, dict[str, Any]]:
    """POST the market order with a header of exactly these bytes, over a socket of its own."""
    body = json.dumps(MARKET).encode()
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(
        b"POST /api/orders/execute HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\nConnection: close\r\n"
        b"Idempotency-Key: " + idempotency_key + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, payload = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


async def test_a_key_that_is_not_utf8_is_refused_alone_among_concurrent_posts(
    client: Client,
) -> None:
    bad_key = b"order-\xff\xfe-\xc3"

    good, (status, body) = await asyncio.gather(
        asyncio.gather(*(client.post("/api/orders/execute", json=MARKET) for _ in range(40))),
        _raw_post(client, bad_key),
    )

    assert [answer.status for answer in good] == [201] * 40
    assert status == 400
    assert body["error"]["code"] == "bad_request"
    assert "printable ASCII" in body["error"]["message"]
    assert "order-" not in json.dumps(body)
    listing = await (await client.get("/api/orders?limit=200")).json()
    assert len(listing["orders"]) == 40


# ---- the intake alone, on the real repository -------------------------------------------


def _new(amount: str = "1", key: str | None = None) -> NewOrder:
    request = OrderRequest(
        type="market", token_in="SOL", token_out="USDC", amount_in=Decimal(amount)
    )
    return NewOrder(request=request, idempotency_key=key, digest=amount if key else None)


@pytest.fixture
async def repository(database_url: str) -> AsyncIterator[FaultyRepository]:
    repository = await FaultyRepository.connect(database_url, 4, 5.0)
    yield repository
    await repository.close()


async def test_a_poisoned_order_fails_alone_and_its_batch_is_committed_one_by_one(
    repository: FaultyRepository,
) -> None:
    repository.gate.clear()
    created: list[Order] = []
    intake = Intake(repository, created.append, max_batch=50)
    # Bytes that are not UTF-8, as aiohttp hands them over: lone surrogates.
    poisoned = _new("3", "key-\udcff\udcfe")
    first = asyncio.create_task(intake.commit(_new("1")))
    await asyncio.sleep(0)
    rest = [_new(str(n + 10)) for n in range(10)] + [poisoned] + [_new("2", "good-key")]
    pending = asyncio.gather(*(intake.commit(new) for new in rest), return_exceptions=True)
    await asyncio.sleep(0)
    repository.gate.set()

    outcomes = [await first, *await pending]
    unfinished = await repository.unfinished()

    assert repository.batches == [1, 12] + [1] * 12
    refusal = outcomes[11]
    assert isinstance(refusal, BadRequest)
    assert refusal.status == 400
    assert "\udcff" not in refusal.message
    others = outcomes[:11] + outcomes[12:]
    assert all(isinstance(outcome, tuple) and outcome[1] for outcome in others), others
    assert len(created) == 12
    assert sorted(unfinished) == sorted(order.order_id for order in created)


async def test_a_lost_commit_keeps_each_orders_idempotent_answer(
    repository: FaultyRepository,
) -> None:
    created: list[Order] = []
    intake = Intake(repository, created.append, max_batch=50)
    earlier, _ = await intake.commit(_new("5", "earlier-key"))
    repository.faults = ["answer_lost"]

    outcomes = await asyncio.gather(
        intake.commit(_new("6")),
        intake.commit(_new("5", "earlier-key")),
        intake.commit(_new("7", "earlier-key")),
        intake.commit(_new("8", "new-key")),
        intake.commit(_new("8", "new-key")),
        return_exceptions=True,
    )

    assert repository.batches[:2] == [1, 5]
    assert repository.connections[0].fault == "answer_lost"
    new_order, replay, conflict, keyed, keyed_again = outcomes
    assert isinstance(new_order, tuple)
    assert new_order[1]
    assert replay == (earlier, False)
    assert isinstance(conflict, IdempotencyConflict)
    assert conflict.details == {"orderId": str(earlier.order_id)}
    assert isinstance(keyed, tuple)
    assert keyed[1]
    assert keyed_again == (keyed[0], False)
    assert [order.order_id for order in created] == [
        earlier.order_id,
        new_order[0].order_id,
        keyed[0].order_id,
    ]
    assert len(await repository.unfinished()) == 3


class EarlierOutOfReach(Repository):
    """The real repository, but the store is out of reach once a batch's statement has run."""

    _ran = False

    async def create_orders(
        self,
        batch: Sequence[NewOrder],
        ids: Sequence[UUID] | None = None,
        rate: SubmitRate | None = None,
    ) -> list[Outcome]:
        self._ran = False
        return await super().create_orders(batch, ids, rate)

    async def _insert_orders(
        self,
        connection: AnyConnection,
        batch: Sequence[NewOrder],
        ids: list[UUID],
        rate: SubmitRate | None,
    ) -> list[asyncpg.Record]:
        records = await super()._insert_orders(connection, batch, ids, rate)
        self._ran = True
        return records

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        if self._ran:
            raise DatabaseUnavailable("injected: database unavailable after the statement")
        async with super()._connection() as connection:
            yield connection


async def test_a_key_whose_earlier_order_cannot_be_looked_up_fails_alone_with_503(
    database_url: str,
) -> None:
    repository = await EarlierOutOfReach.connect(database_url, 2, 5.0)
    try:
        request = OrderRequest.model_validate(MARKET)
        keyed = NewOrder(request=request, idempotency_key="once", digest="body")
        [(earlier, created)] = await repository.create_orders([keyed])  # type: ignore[misc]
        assert created

        again, fresh = await repository.create_orders([keyed, NewOrder(request=request)])
    finally:
        await repository.close()

    assert isinstance(again, DatabaseUnavailable)
    assert isinstance(fresh, tuple)
    order, created = fresh
    assert created
    assert order.order_id != earlier.order_id


@asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A DSN whose server takes connections and never answers, as a stalled database does."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_a_submission_behind_a_silent_store_is_refused_within_the_stores_timeout(
    database_url: str,
) -> None:
    """The connection is opened with the submission's time left, not a whole timeout more.

    Its connection's own timeout is a minute here; the store's is a fraction of a second.
    """
    pool = await create_pool(database_url, 1, 0.3)
    async with silent_server() as silent:
        repository = Repository(pool, 0.3, DedicatedConnection(silent, 60.0))
        created: list[Order] = []
        intake = Intake(repository, created.append, max_batch=50)
        try:
            async with asyncio.timeout(10):
                outcome = await asyncio.gather(intake.commit(_new("1")), return_exceptions=True)
        finally:
            await repository.close()

    assert isinstance(outcome[0], DatabaseUnavailable), repr(outcome[0])
    assert created == []
