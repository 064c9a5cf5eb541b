"""The yardstick servers: how most implementations of such a system ingest an order.

`python -m bench.straightforward --port P --database-url URL` serves one POST handler that
validates the order with the engine's own model (`orderengine.domain.OrderRequest`) and
commits its row and first event in one transaction of its own, then answers 201 with the
order's id: no batching, no queue, a pool of connections and a transaction per request.
Without `--database-url` the same handler writes nothing (it validates and answers 201):
the HTTP ceiling, what aiohttp, pydantic and the clients cost alone.

Its tables are bench/pgbench/schema.sql, in a database of their own (bench/yardsticks.py
creates it). `GET /health` answers 200 once it listens, for whoever started it.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Sequence
from typing import Final
from uuid import UUID, uuid4

import asyncpg
from aiohttp import web
from pydantic import ValidationError

from bench.load import ORDER_PATH
from orderengine.domain import OrderRequest
from orderengine.settings import Settings
from tests.engine_process import HOST

POOL: Final = web.AppKey("pool", asyncpg.Pool)
INSERT_ORDER: Final = """
    INSERT INTO orders (id, type, token_in, token_out, amount_in, slippage_bps, limit_price,
                        expires_at, status)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending')
"""
INSERT_FIRST_EVENT: Final = """
    INSERT INTO order_events (order_id, seq, status, attempt) VALUES ($1, 1, 'pending', 1)
"""


async def accept(request: web.Request) -> web.Response:
    """Validate the order, store it if the app has a database, and answer 201 with its id."""
    try:
        order = OrderRequest.model_validate_json(await request.read())
    except ValidationError as error:
        return web.Response(
            text=error.json(include_url=False), status=422, content_type="application/json"
        )
    order_id = uuid4()
    pool = request.app.get(POOL)
    if pool is not None:
        await store(pool, order_id, order)
    return web.json_response({"orderId": str(order_id)}, status=201)


async def store(pool: asyncpg.Pool, order_id: UUID, order: OrderRequest) -> None:
    """The order's row and its first event, committed together."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            INSERT_ORDER,
            order_id,
            order.type,
            order.token_in,
            order.token_out,
            order.amount_in,
            order.slippage_bps,
            order.limit_price,
            order.expires_at,
        )
        await connection.execute(INSERT_FIRST_EVENT, order_id)


async def health(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def create_app(database_url: str | None, pool_size: int) -> web.Application:
    """The app; with a database URL, a pool of `pool_size` connections opened at start."""
    app = web.Application()
    app.router.add_post(ORDER_PATH, accept)
    app.router.add_get("/health", health)
    if database_url is not None:

        async def pooled(app: web.Application) -> AsyncIterator[None]:
            async with asyncpg.create_pool(
                database_url, min_size=pool_size, max_size=pool_size
            ) as pool:
                app[POOL] = pool
                yield

        app.cleanup_ctx.append(pooled)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.straightforward")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", help="where to commit each order; none: the HTTP ceiling")
    parser.add_argument(
        "--pool-size",
        type=int,
        default=Settings.model_fields["db_pool_size"].default,
        help="database connections (the engine's default pool size if omitted)",
    )
    args = parser.parse_args(argv)
    app = create_app(args.database_url, args.pool_size)
    web.run_app(app, host=HOST, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
