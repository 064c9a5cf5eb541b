"""API keys: who may call, whose orders each sees, stream tokens, limits and exposure."""

from __future__ import annotations

import asyncio
import io
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from aiohttp import WSMsgType, WSServerHandshakeError, web
from multidict import CIMultiDict
from structlog.testing import capture_logs

from orderengine import cli
from orderengine.access import Exposed, StreamTokens, key_hash
from orderengine.app import create_app
from orderengine.key_commands import REFUSED, create, revoke
from orderengine.keys import ENGINE, STREAM_TOKENS
from orderengine.repository import Repository
from tests.harness import Client, StartApp, fast_settings
from tests.polling import eventually
from tests.raw_http import exchange, request_bytes, serving
from tests.streams import MARKET, read_until_closed

ALICE = "alice-key-0123456789"
BOB = "bob-key-0123456789abc"
FRANK = "frank-key-0123456789"
KEYS: dict[str, Any] = {"api_keys": {"alice": ALICE, "bob": BOB}, "admin_keys": ("alice",)}


UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}
"""A valid WebSocket handshake, sent as a plain request to see its refusal."""


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def keyed(start_app: StartApp) -> Client:
    return await start_app(**KEYS)


async def submit(client: Client, key: str, **headers: str) -> dict[str, Any]:
    response = await client.post(
        "/api/orders/execute", json=MARKET, headers={**bearer(key), **headers}
    )
    assert response.status in (200, 201), await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def submit_body(client: Client, key: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/orders/execute", json=body, headers=bearer(key))
    assert response.status == 201, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


async def test_no_key_and_a_wrong_key_are_401_in_the_error_shape(keyed: Client) -> None:
    missing = await keyed.get("/api/orders")
    wrong = await keyed.get("/api/orders", headers=bearer("not-a-key-at-all-0000"))
    not_bearer = await keyed.get("/api/orders", headers={"Authorization": f"Basic {ALICE}"})

    assert missing.status == wrong.status == not_bearer.status == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="orderengine"'
    assert wrong.headers["WWW-Authenticate"].endswith('error="invalid_token"')
    assert (await missing.json())["error"]["code"] == "unauthorized"
    assert ALICE not in await wrong.text()


@pytest.mark.parametrize("path", ["/api/orders", "/api/events"])
async def test_a_key_that_is_not_utf8_is_401_like_any_wrong_key(
    database_url: str, path: str
) -> None:
    async with serving(database_url, **KEYS) as site:
        right = await exchange(site.port, request_bytes("GET", path, headers=bearer(ALICE)))
        for key in (f"{ALICE}\xe9", "\xff\xfe"):
            wrong = await exchange(site.port, request_bytes("GET", path, headers=bearer(key)))
            assert wrong.status == 401
            assert wrong.json()["error"]["code"] == "unauthorized"

    assert right.status == (200 if path == "/api/orders" else 426)  # let in, then not upgraded


async def test_two_authorization_headers_are_400_whichever_key_they_hold(
    keyed: Client,
) -> None:
    twice = CIMultiDict([("Authorization", f"Bearer {ALICE}"), ("Authorization", f"Bearer {BOB}")])

    response = await keyed.get("/api/orders", headers=twice)

    assert response.status == 400
    assert (await response.json())["error"]["message"] == (
        "the request gives Authorization more than once"
    )


async def test_health_and_metrics_stay_open(keyed: Client) -> None:
    assert (await keyed.get("/health")).status == 200
    assert (await keyed.get("/metrics")).status == 200


async def test_another_owners_order_is_unknown_on_every_route(keyed: Client) -> None:
    order = await submit(keyed, ALICE)
    path = f"/api/orders/{order['orderId']}"

    read = await keyed.get(path, headers=bearer(BOB))
    cancel = await keyed.delete(path, headers=bearer(BOB))
    socket = await keyed.get(
        f"/api/orders/execute?orderId={order['orderId']}", headers={**bearer(BOB), **UPGRADE}
    )
    mine = await keyed.get(path, headers=bearer(ALICE))
    theirs = await (await keyed.get("/api/orders", headers=bearer(BOB))).json()
    own = await (await keyed.get("/api/orders", headers=bearer(ALICE))).json()

    assert read.status == cancel.status == socket.status == 404
    assert (await read.json())["error"]["code"] == "order_not_found"
    assert mine.status == 200
    assert order["orderId"] not in [o["orderId"] for o in theirs["orders"]]
    assert order["orderId"] in [o["orderId"] for o in own["orders"]]


async def test_idempotency_keys_are_scoped_to_their_owner(keyed: Client) -> None:
    alices = await submit(keyed, ALICE, **{"Idempotency-Key": "same"})
    bobs = await submit(keyed, BOB, **{"Idempotency-Key": "same"})
    again = await submit(keyed, ALICE, **{"Idempotency-Key": "same"})

    assert alices["orderId"] != bobs["orderId"]
    assert again["orderId"] == alices["orderId"]


async def test_the_signed_ws_url_follows_the_order_without_a_header(keyed: Client) -> None:
    order = await submit(keyed, ALICE)
    assert "&token=" in order["ws"]

    statuses = []
    async with keyed.ws_connect(order["ws"]) as ws:
        async for message in ws:
            assert message.type == WSMsgType.TEXT
            statuses.append(message.json()["status"])

    assert statuses[-1] == "confirmed"


async def test_a_tampered_or_expired_token_is_refused_before_the_upgrade(
    keyed: Client,
) -> None:
    order = await submit(keyed, ALICE)
    tampered = order["ws"][:-2] + ("AA" if not order["ws"].endswith("AA") else "BB")
    expired_tokens = StreamTokens(keyed.app[STREAM_TOKENS]._secret, ttl_s=-1)
    expired = f"/api/orders/execute?orderId={order['orderId']}&token=" + (
        expired_tokens.for_order(order["orderId"])
    )

    for url in (tampered, expired):
        response = await keyed.get(url)
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "unauthorized"


async def test_a_token_for_one_order_shows_no_other(keyed: Client) -> None:
    first = await submit(keyed, ALICE)
    second = await submit(keyed, ALICE)
    token = first["ws"].split("&token=")[1]

    socket = await keyed.get(
        f"/api/orders/execute?orderId={second['orderId']}&token={token}", headers=UPGRADE
    )
    listing = await keyed.get(f"/api/orders?token={token}")

    assert socket.status == 404
    assert listing.status == 401  # a token opens sockets only


async def test_a_token_for_one_order_opens_no_socket_to_submit_on(keyed: Client) -> None:
    """Refused before the upgrade: such a socket would hold a connection only to refuse."""
    order = await submit(keyed, ALICE)
    token = order["ws"].split("&token=")[1]

    refused = await keyed.get(f"/api/orders/execute?token={token}", headers=UPGRADE)

    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "forbidden"


async def test_a_stream_token_lets_a_socket_submit_for_its_owner(keyed: Client) -> None:
    minted = await keyed.post("/api/stream-tokens", headers=bearer(ALICE))
    body = await minted.json()

    async with keyed.ws_connect(body["ws"]) as ws:
        await ws.send_json(MARKET)
        accepted = await ws.receive_json()
    read = await keyed.get(f"/api/orders/{accepted['orderId']}", headers=bearer(ALICE))
    hidden = await keyed.get(f"/api/orders/{accepted['orderId']}", headers=bearer(BOB))

    assert minted.status == 201
    assert read.status == 200
    assert hidden.status == 404


async def test_a_keys_submissions_are_limited_alone(start_app: StartApp) -> None:
    client = await start_app(**KEYS, key_submit_per_minute=6)

    await submit(client, ALICE)
    over = await client.post("/api/orders/execute", json=MARKET, headers=bearer(ALICE))
    other = await client.post("/api/orders/execute", json=MARKET, headers=bearer(BOB))

    assert over.status == 429
    assert int(over.headers["Retry-After"]) >= 1
    assert (await over.json())["error"]["code"] == "rate_limited"
    assert other.status == 201


async def test_a_first_message_over_the_key_s_rate_is_told_to_try_again_later(
    start_app: StartApp,
) -> None:
    client = await start_app(**KEYS, key_submit_per_minute=6)
    await submit(client, ALICE)

    async with client.ws_connect("/api/orders/execute", headers=bearer(ALICE)) as ws:
        await ws.send_json(MARKET)
        refusal = await ws.receive_json(timeout=5)
        await ws.receive(timeout=5)

    assert refusal["error"]["code"] == "rate_limited"
    assert ws.close_code == 1013


async def test_a_keys_limit_holds_across_the_engines_on_a_database(start_app: StartApp) -> None:
    # Six a minute: a burst of one, and ten seconds for the next.
    first = await start_app(**KEYS, key_submit_per_minute=6)
    second = await start_app(**KEYS, key_submit_per_minute=6)

    await submit(first, ALICE)
    elsewhere = await second.post("/api/orders/execute", json=MARKET, headers=bearer(ALICE))
    others = await second.post("/api/orders/execute", json=MARKET, headers=bearer(BOB))

    assert elsewhere.status == 429
    assert int(elsewhere.headers["Retry-After"]) >= 5
    assert others.status == 201


async def test_listing_a_pool_needs_an_admin_key(keyed: Client) -> None:
    listing = {
        "dex": "meteora",
        "token": "ADMINX1",
        "quoteToken": "SOL",
        "price": "1",
        "liquidity": "100",
    }

    bobs = await keyed.post("/api/simulation/listings", json=listing, headers=bearer(BOB))
    alices = await keyed.post("/api/simulation/listings", json=listing, headers=bearer(ALICE))

    assert bobs.status == 403
    assert alices.status == 201


async def test_an_exposed_engine_with_no_key_refuses_to_start(database_url: str) -> None:
    runner = web.AppRunner(create_app(fast_settings(database_url, host="0.0.0.0")))

    with pytest.raises(Exposed, match="ORDERENGINE_ALLOW_ANONYMOUS"):
        await runner.setup()
    await runner.cleanup()


async def test_an_exposed_engine_starts_when_told_it_is_open_or_given_keys(
    start_app: StartApp,
) -> None:
    anonymous = await start_app(host="0.0.0.0", allow_anonymous=True)
    keyed = await start_app(host="0.0.0.0", **KEYS)

    assert (await anonymous.get("/api/orders")).status == 200
    assert (await keyed.get("/api/orders")).status == 401


@pytest.mark.parametrize("name", ["", " alice", "alice ", "a,b", "a:b", "tab\there"])
async def test_a_key_is_not_made_under_a_name_no_setting_could_name(
    repository: Repository, name: str
) -> None:
    out = io.StringIO()

    assert await create(repository.keys, name, out) == REFUSED
    assert "a key's name is" in out.getvalue()
    assert (await repository.keys.key_set()).active == {}


async def test_keys_created_and_revoked_in_the_database_apply_at_once(
    client: Client, repository: Repository
) -> None:
    out = io.StringIO()
    assert await create(repository.keys, "carol", out) == 0
    key = out.getvalue().strip()

    await eventually(lambda: _status_is(client, {}, 401))
    assert (await client.get("/api/orders", headers=bearer(key))).status == 200
    assert await revoke(repository.keys, "carol", io.StringIO()) == 0
    await eventually(lambda: _status_is(client, bearer(key), 200))  # no key in force: open


async def _status_is(client: Client, headers: dict[str, str], status: int) -> bool:
    return (await client.get("/api/orders", headers=headers)).status == status


async def test_cors_preflights_are_answered_for_listed_origins_only(
    start_app: StartApp,
) -> None:
    client = await start_app(cors_origins=("https://front.example",))
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }

    allowed = await client.options(
        "/api/orders/execute", headers={**ask, "Origin": "https://front.example"}
    )
    refused = await client.options(
        "/api/orders/execute", headers={**ask, "Origin": "https://evil.example"}
    )
    read = await client.get("/api/orders", headers={"Origin": "https://front.example"})
    other = await client.get("/api/orders", headers={"Origin": "https://evil.example"})

    assert allowed.status == 204
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in allowed.headers["Access-Control-Allow-Headers"]
    assert refused.status == 403
    assert read.headers["Access-Control-Allow-Origin"] == "https://front.example"
    assert "Retry-After" in read.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_a_preflight_on_a_path_the_engine_does_not_serve_is_its_404(
    start_app: StartApp,
) -> None:
    client = await start_app(cors_origins=("https://front.example",))
    asking = {"Origin": "https://front.example", "Access-Control-Request-Method": "POST"}

    served = await client.options("/api/orders/execute", headers=asking)
    unknown = await client.options("/api/no-such-path", headers=asking)

    assert served.status == 204
    assert unknown.status == 404
    assert (await unknown.json())["error"]["code"] == "not_found"
    assert "Access-Control-Allow-Methods" not in unknown.headers
    assert unknown.headers["Access-Control-Allow-Origin"] == "https://front.example"


async def test_with_keys_a_preflight_needs_none_and_any_other_options_is_a_401(
    start_app: StartApp,
) -> None:
    """As the OpenAPI document says of each path's OPTIONS: no key, or a key."""
    client = await start_app(**KEYS, cors_origins=("https://front.example",))
    asking = {"Origin": "https://front.example", "Access-Control-Request-Method": "GET"}

    preflight = await client.options("/api/orders", headers=asking)
    plain = await client.options("/api/orders")

    assert preflight.status == 204
    assert plain.status == 401


async def test_answers_carry_the_security_headers(client: Client) -> None:
    api = await client.get("/api/orders")
    health = await client.get("/health")
    missing = await client.get("/api/orders/not-an-id")

    for response in (api, health, missing):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
    assert api.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in api.headers["Content-Security-Policy"]


async def dave_beside_erin(client: Client, repository: Repository) -> str:
    """A key made for dave, once `client`'s engine takes it; erin's keeps keys in force.

    So that revoking dave's never leaves the engine open to everyone, even for a moment.
    """
    out = io.StringIO()
    await create(repository.keys, "dave", out)
    await create(repository.keys, "erin", io.StringIO())
    dave = out.getvalue().strip()
    await eventually(lambda: _status_is(client, bearer(dave), 200))
    return dave


async def test_a_revoked_key_is_refused_by_every_engine(
    start_app: StartApp, repository: Repository
) -> None:
    first = await start_app()
    second = await start_app()
    key = await dave_beside_erin(second, repository)

    await revoke(repository.keys, "dave", io.StringIO())

    await eventually(lambda: _status_is(first, bearer(key), 401))
    await eventually(lambda: _status_is(second, bearer(key), 401))


async def test_a_revoked_key_ends_its_stream_tokens_and_its_open_sockets(
    start_app: StartApp, repository: Repository
) -> None:
    client = await start_app()
    dave = await dave_beside_erin(client, repository)
    minted = await client.post("/api/stream-tokens", headers=bearer(dave))
    token = (await minted.json())["token"]
    waiting = {**MARKET, "type": "limit", "limitPrice": "1000000"}
    order = await submit_body(client, dave, waiting)
    async with client.ws_connect(f"/api/events?token={token}") as feed:
        await feed.close()

    async with (
        client.ws_connect(
            f"/api/orders/execute?orderId={order['orderId']}", headers=bearer(dave)
        ) as ws,
        client.ws_connect("/api/events", headers=bearer(dave)) as everything,
    ):
        first = await ws.receive_json()
        await revoke(repository.keys, "dave", io.StringIO())
        await eventually(lambda: _status_is(client, bearer(dave), 401))
        with pytest.raises(WSServerHandshakeError) as refused:
            await client.ws_connect(f"/api/events?token={token}")
        await client.app[ENGINE].cancel(UUID(order["orderId"]))  # the order's next event
        rest = await read_until_closed(ws, limit_s=10)
        fed = await read_until_closed(everything, limit_s=10)

    assert first["status"] == "pending"
    assert refused.value.status == 401
    for socket, messages in ((ws, rest), (everything, fed)):
        *events, last = messages
        assert last["error"]["code"] == "unauthorized"
        # The price watcher's reports may come before the revocation, never the cancel.
        assert all(event["status"] == "pending" for event in events)
        assert socket.close_code == 1008


async def test_a_key_made_again_for_the_same_owner_revives_nothing_of_the_revoked_one(
    start_app: StartApp, repository: Repository
) -> None:
    """Rotating a leaked key: its tokens and sockets end, though its owner holds a new one."""
    client = await start_app()
    old = await dave_beside_erin(client, repository)
    token = (await (await client.post("/api/stream-tokens", headers=bearer(old))).json())["token"]
    waiting = {**MARKET, "type": "limit", "limitPrice": "1000000"}
    order = await submit_body(client, old, waiting)

    async with client.ws_connect(
        f"/api/orders/execute?orderId={order['orderId']}", headers=bearer(old)
    ) as ws:
        await ws.receive_json()
        await revoke(repository.keys, "dave", io.StringIO())
        out = io.StringIO()
        await create(repository.keys, "dave", out)
        new = out.getvalue().strip()
        await eventually(lambda: _status_is(client, bearer(new), 200))
        await client.app[ENGINE].cancel(UUID(order["orderId"]))  # the order's next event
        rest = await read_until_closed(ws, limit_s=10)
        with pytest.raises(WSServerHandshakeError) as refused:
            await client.ws_connect(f"/api/events?token={token}")

    assert (await client.get("/api/orders", headers=bearer(old))).status == 401
    assert refused.value.status == 401
    assert rest[-1]["error"]["code"] == "unauthorized"
    assert ws.close_code == 1008


async def test_a_stream_token_with_characters_added_is_refused(keyed: Client) -> None:
    minted = await keyed.post("/api/stream-tokens", headers=bearer(ALICE))
    token = (await minted.json())["token"]
    payload, _, signature = token.partition(".")
    altered = f"{payload[:4]}%21%21%21%21{payload[4:]}.{signature}"  # "!!!!" within it

    with pytest.raises(WSServerHandshakeError) as refused:
        await keyed.ws_connect(f"/api/events?token={altered}")

    assert refused.value.status == 401
    async with keyed.ws_connect(f"/api/events?token={token}") as fine:
        assert not fine.closed


async def test_a_key_holds_a_bounded_number_of_sockets(start_app: StartApp) -> None:
    """Sockets are never idle: without a bound one key could take every connection.

    Sockets opened with tokens for single orders count apart: one that leaked cannot take
    the sockets of its owner's key.
    """
    client = await start_app(**KEYS, key_max_sockets=2)
    order = await submit_body(client, ALICE, {**MARKET, "type": "limit", "limitPrice": "1000000"})

    async with (
        client.ws_connect("/api/events", headers=bearer(ALICE)),
        client.ws_connect("/api/events", headers=bearer(ALICE)),
        client.ws_connect(order["ws"]),
        client.ws_connect(order["ws"]),
    ):
        with pytest.raises(WSServerHandshakeError) as refused:
            await client.ws_connect("/api/events", headers=bearer(ALICE))
        with pytest.raises(WSServerHandshakeError) as by_token:
            await client.ws_connect(order["ws"])
        async with client.ws_connect("/api/events", headers=bearer(BOB)) as bobs:
            assert not bobs.closed
        over = await client.post(
            "/api/orders/execute", json=MARKET, headers={**bearer(ALICE), **UPGRADE}
        )
    async with client.ws_connect("/api/events", headers=bearer(ALICE)) as again:
        assert not again.closed

    assert refused.value.status == 429
    assert by_token.value.status == 429
    assert over.status == 429
    assert (await over.json())["error"]["code"] == "too_many_sockets"
    listing = await (await client.get("/api/orders", headers=bearer(ALICE))).json()
    assert len(listing["orders"]) == 1, "the refused upgrade made no order"


async def test_a_socket_whose_key_was_revoked_while_it_waited_takes_no_order(
    start_app: StartApp, repository: Repository
) -> None:
    client = await start_app()
    dave = await dave_beside_erin(client, repository)

    async with client.ws_connect("/api/orders/execute", headers=bearer(dave)) as ws:
        await revoke(repository.keys, "dave", io.StringIO())
        await eventually(lambda: _status_is(client, bearer(dave), 401))
        await ws.send_json(MARKET)
        refusal = await ws.receive_json(timeout=5)
        await ws.receive(timeout=5)

    assert refusal["error"]["code"] == "unauthorized"
    assert ws.close_code == 1008
    orders, _ = await repository.list_orders(None, None, 10)
    assert orders == []


async def test_keys_are_reloaded_every_sweep_even_when_no_news_came(
    start_app: StartApp, database_url: str
) -> None:
    client = await start_app(sweep_s=0.2)
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "INSERT INTO api_keys (key_hash, name) VALUES ($1, 'frank')", key_hash(FRANK)
        )  # no NOTIFY: as if the news were lost
    finally:
        await connection.close()

    await eventually(lambda: _status_is(client, {}, 401), limit_s=10)
    assert (await client.get("/api/orders", headers=bearer(FRANK))).status == 200


async def test_engines_starting_together_share_one_stream_secret(database_url: str) -> None:
    repositories = [await Repository.connect(database_url, 2, 5.0) for _ in range(4)]
    try:
        secrets_ = await asyncio.gather(
            *(r.shared.secret("together", bytes([n]) * 32) for n, r in enumerate(repositories))
        )
    finally:
        for repository in repositories:
            await repository.close()

    assert len(set(secrets_)) == 1
    assert secrets_[0] in {bytes([n]) * 32 for n in range(4)}


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
async def test_an_engine_whose_last_key_is_revoked_lets_nobody_in(
    start_app: StartApp, repository: Repository, host: str
) -> None:
    """On loopback too: revoking a key must not open the API to anyone who reaches it."""
    out = io.StringIO()
    await create(repository.keys, "gina", out)
    key = out.getvalue().strip()
    client = await start_app(host=host)
    assert (await client.get("/api/orders", headers=bearer(key))).status == 200

    await revoke(repository.keys, "gina", io.StringIO())

    await eventually(lambda: _status_is(client, bearer(key), 401))
    assert (await client.get("/api/orders")).status == 401


async def test_an_engine_started_with_every_key_revoked_lets_nobody_in(
    start_app: StartApp, repository: Repository
) -> None:
    await create(repository.keys, "hal", io.StringIO())
    await revoke(repository.keys, "hal", io.StringIO())

    with capture_logs() as logs:
        client = await start_app()

    assert (await client.get("/api/orders")).status == 401
    assert "every_key_revoked" in [line["event"] for line in logs]


async def test_list_token_sends_its_key(keyed: Client) -> None:
    url = f"http://{keyed.host}:{keyed.port}"
    body = {
        "dex": "raydium",
        "token": "CLIKEY1",
        "quoteToken": "SOL",
        "price": "1",
        "liquidity": "100",
    }
    out, err = io.StringIO(), io.StringIO()

    without = await cli.list_token(url, body, out=out, err=err)
    with_admin = await cli.list_token(url, body, key=ALICE, out=out, err=err)

    assert without == cli.REFUSED
    assert "401" in err.getvalue()
    assert with_admin == cli.LISTED
    assert '"token": "CLIKEY1"' in out.getvalue()


async def test_with_no_key_only_requests_naming_this_machine_are_answered(
    client: Client,
) -> None:
    """A page reaching the engine by DNS rebinding names its own host, and may not trade."""
    port = client.server.port
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "10.0.0.5"):
        refused = await client.post("/api/orders/execute", json=MARKET, headers={"Host": host})
        assert refused.status == 403
        assert (await refused.json())["error"]["code"] == "forbidden_host"
    assert (await client.get("/api/orders")).status == 200
    assert (await (await client.get("/api/orders")).json())["orders"] == []

    for host in (f"localhost:{port}", "127.0.0.1", f"[::1]:{port}", "app.localhost"):
        accepted = await client.post("/api/orders/execute", json=MARKET, headers={"Host": host})
        assert accepted.status == 201


async def test_a_key_or_an_open_engine_answers_any_host(start_app: StartApp) -> None:
    keyed = await start_app(**KEYS)
    answer = await keyed.post(
        "/api/orders/execute", json=MARKET, headers={"Host": "orders.example", **bearer(ALICE)}
    )
    assert answer.status == 201

    open_to_all = await start_app(host="0.0.0.0", allow_anonymous=True)
    answer = await open_to_all.post(
        "/api/orders/execute", json=MARKET, headers={"Host": "orders.example"}
    )
    assert answer.status == 201


async def test_a_request_naming_no_host_comes_from_no_browser_and_is_answered(
    database_url: str,
) -> None:
    """HTTP/1.0 needs no `Host`, and some probes send none.

    aiohttp then names the address the request came to, which is this machine's.
    """
    async with serving(database_url) as site:
        answer = await exchange(site.port, b"GET /api/orders HTTP/1.0\r\n\r\n")

    assert answer.status == 200
    assert answer.json()["orders"] == []
