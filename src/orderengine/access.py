"""Who may use the API: API keys and their owners, stream tokens, and the per-key limit.

Keys come from two sources, both real. The database's `api_keys` holds keys created with
`python -m orderengine keys create NAME`: only each key's SHA-256 is stored, and a revoked
key is refused by every engine as soon as it hears of it (`KEYS_CHANNEL`). The settings give
the others (`ORDERENGINE_API_KEYS`, `ORDERENGINE_API_KEYS_FILE`), for deployments that
configure keys from outside. The owner of a key is its name: each order belongs to the owner
whose key created it, and no other owner can tell it exists.

With no key in force the API is open, as for a local demonstration; `check_exposure` then
refuses to serve on an address other than loopback unless `ORDERENGINE_ALLOW_ANONYMOUS` says
it is meant to be open; and on loopback it answers only requests whose `Host` names this
machine (`names_this_machine`), so that a web page reaching it through DNS rebinding cannot
trade.

One key holds at most so many sockets open on an engine (`KeySockets`): sockets are never
idle, so the connection cap never closes one for a newcomer, and one key could otherwise take
every connection an engine has. Sockets opened with tokens for single orders count apart, by
their orders' owner (`Caller.holder`).

A browser cannot set a header on a WebSocket, so the answer to an accepted order carries a
stream token in its `ws` URL: an HMAC, under a secret every engine on the database shares, of
that order's id and an expiry. A token for an owner (`POST /api/stream-tokens`) lets a socket
submit its order as the first message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from uuid import UUID

import structlog
from yarl import URL

from orderengine.errors import Forbidden, TooManySockets
from orderengine.key_store import KeyStore
from orderengine.shared_values import SharedValues

log = structlog.get_logger(__name__)

KEY_PREFIX = "oek_"
"""Every key `keys create` makes starts so, which makes a leaked one easy to recognise."""
STREAM_SECRET = "stream_tokens"
"""The name of the shared secret that signs stream tokens (`engine_secrets`)."""


def new_key() -> str:
    """A new API key: the prefix and 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    """What is stored of a key, and what a presented key is compared by.

    A header that is not UTF-8 reaches us with its stray bytes as surrogates (aiohttp decodes
    with `surrogateescape`): they are hashed as the bytes they were, so such a key is simply
    one nobody holds.
    """
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class Caller:
    """Who is asking: an owner (None while no key is in force), and what it may do.

    `order_id` limits a caller holding a stream token for one order to that order. `key` is
    the hash of the key it acts with, its own or the one its owner token was made with: what
    revoking takes away (`KeyRing.admits`), whatever key its owner holds since.
    """

    owner: str | None
    admin: bool
    order_id: UUID | None = None
    key: str | None = None

    def sees(self, order_id: UUID, owner: str | None) -> bool:
        """Whether the order `owner` holds is this caller's to see.

        Another's is as if it did not exist.
        """
        if self.order_id is not None:
            return order_id == self.order_id
        return self.owner is None or owner == self.owner

    def refuse_token_for_one_order(self) -> None:
        """A 403 (`Forbidden`) for a stream token for one order: it may only follow that one."""
        if self.order_id is not None:
            raise Forbidden("a stream token for one order may only follow that order")

    def holder(self, owner: str | None = None) -> str | None:
        """Whose sockets a socket of this caller's counts among (`KeySockets`).

        The key it acts with; for a token for one order, the tokens for single orders of
        the order's `owner`, apart from the owner's keys: a token that leaked cannot take
        the sockets the owner's key may open. None when no key is in force.
        """
        if self.key is not None:
            return self.key
        return f"tokens for orders of {owner}" if self.order_id and owner is not None else None


OPEN = Caller(owner=None, admin=True)
"""Every caller while no key is in force."""


@dataclass
class KeyRing:
    """The keys in force: the settings' (by hash), and the database's active ones."""

    configured: dict[str, str]
    """Owner by key hash, from the settings."""
    admins: frozenset[str]
    stored: dict[str, str] = field(default_factory=dict)
    """Owner by key hash, from `api_keys`, as last loaded."""
    required: bool = False
    """Keys are needed even when none exists: the engine serves a network (`exposed`)."""
    revoked_all: bool = False
    """Keys were created on the database, and every one of them is revoked: keys are still
    needed, so that revoking the last one shuts everyone out rather than letting everyone
    in, on any address, and on every engine of the database alike."""
    _loaded: bool = False
    _keys: frozenset[str] = frozenset()
    """The hashes of the keys in force, for `admits`, asked before every socket write."""

    def __post_init__(self) -> None:
        self._index_keys()

    def _index_keys(self) -> None:
        self._keys = frozenset(self.configured) | frozenset(self.stored)

    @classmethod
    def of(cls, keys: Mapping[str, str], admins: tuple[str, ...]) -> KeyRing:
        """The ring of the settings' keys (`owner: key`), before the database's are loaded."""
        return cls({key_hash(key): owner for owner, key in keys.items()}, frozenset(admins))

    @property
    def in_force(self) -> bool:
        """Whether a key is needed: one admits, all were revoked, or the engine is exposed."""
        return self.required or self.revoked_all or self.holds_keys

    @property
    def holds_keys(self) -> bool:
        """Whether any key admits a caller."""
        return bool(self.configured or self.stored)

    async def load(self, keys: KeyStore) -> None:
        """Read the database's active keys; log them when they changed.

        At start, when one is created or revoked, and every sweep.
        """
        stored, created = await keys.key_set()
        revoked_all = created and not stored
        if stored != self.stored or revoked_all != self.revoked_all or not self._loaded:
            log.info("keys_loaded", stored=len(stored), configured=len(self.configured))
            if revoked_all and not self.configured:
                log.warning("every_key_revoked", hint=EVERY_KEY_REVOKED)
        self.stored, self.revoked_all, self._loaded = stored, revoked_all, True
        self._index_keys()

    def admits(self, caller: Caller) -> bool:
        """Whether `caller` may still act: no key is in force, or the key it acts with is.

        For a socket opened with a key, or with a token made with one, that was revoked
        since: a key made afterwards for the same owner admits neither. A caller holding a
        token for one order acts with no key, and is admitted.
        """
        return not self.in_force or caller.key is None or caller.key in self._keys

    def caller(self, key: str) -> Caller | None:
        """The owner of `key`, as a caller; None for a key that is wrong or revoked.

        The key's hash is compared with every hash in force, each in constant time.
        """
        presented = key_hash(key)
        found = None
        for ring in (self.configured, self.stored):
            for known, name in ring.items():
                if hmac.compare_digest(presented, known):
                    found = known, name
        if found is None:
            return None
        known, owner = found
        return Caller(owner=owner, admin=owner in self.admins, key=known)

    def key_of(
        self, owner: str, fingerprint: str, fingerprint_of: Callable[[str], str]
    ) -> str | None:
        """The hash of `owner`'s key in force whose fingerprint is `fingerprint`, if any."""
        for ring in (self.configured, self.stored):
            for known, name in ring.items():
                if name == owner and hmac.compare_digest(fingerprint_of(known), fingerprint):
                    return known
        return None


@dataclass(frozen=True)
class Grant:
    """What a valid stream token allows: to follow one order, or to act as one owner.

    An owner's token names the key it was made with by a fingerprint (`key`).
    """

    order_id: UUID | None = None
    owner: str | None = None
    key: str = ""


class StreamTokens:
    """Signs and reads stream tokens: `base64url(payload).base64url(HMAC-SHA256)`."""

    def __init__(self, secret: bytes, ttl_s: float) -> None:
        self._secret = secret
        self._ttl_s = ttl_s

    @classmethod
    async def shared(cls, shared: SharedValues, ttl_s: float) -> StreamTokens:
        """Tokens under the secret every engine on the database shares (made by the first)."""
        return cls(await shared.secret(STREAM_SECRET, secrets.token_bytes(32)), ttl_s)

    def for_order(self, order_id: UUID) -> str:
        """A token to follow `order_id`, valid for the token lifetime."""
        return self._sign(["order", str(order_id), self._expiry()])

    def for_owner(self, owner: str, key: str | None) -> tuple[str, datetime]:
        """A token to act as `owner` with the key of hash `key` on a socket; its expiry.

        It names the key by `fingerprint`: revoking the key ends the token, and a token
        that leaks says nothing about the key.
        """
        expires = self._expiry()
        claims = ["owner", owner, expires, self.fingerprint(key) if key else ""]
        return self._sign(claims), datetime.fromtimestamp(expires, UTC)

    def fingerprint(self, key: str) -> str:
        """What an owner's token says of the key of hash `key`: an HMAC under the secret."""
        return hmac.new(self._secret, b"key:" + key.encode(), hashlib.sha256).hexdigest()[:32]

    def read(self, token: str) -> Grant | None:
        """What the token grants; None if it is malformed, tampered with or expired."""
        encoded, _, signature = token.partition(".")
        try:
            payload = _decode(encoded)
            given = _decode(signature)
        except ValueError:
            return None
        if not hmac.compare_digest(given, self._mac(payload)):
            return None
        try:
            kind, subject, expires, *key = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(expires, int) or expires < time.time():
            return None
        if kind == "order":
            return Grant(order_id=UUID(subject))
        return Grant(owner=str(subject), key=str(key[0]) if key else "")

    def _expiry(self) -> int:
        return int(time.time() + self._ttl_s)

    def _sign(self, claims: list[object]) -> str:
        payload = json.dumps(claims, separators=(",", ":")).encode()
        return f"{_encode(payload)}.{_encode(self._mac(payload))}"

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def _decode(text: str) -> bytes:
    """Base64url without padding; ValueError for anything else.

    Python's decoder passes over characters outside the alphabet: a token with some added
    would read as the token it was.
    """
    if not _BASE64URL.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


EVERY_KEY_REVOKED = (
    "every API key of the database is revoked: the API lets nobody in until one is created"
    " with `python -m orderengine keys create NAME`"
)


class Exposed(Exception):
    """The engine would serve a network with no key in force, and was not told it may."""


def exposed(host: str, allow_anonymous: bool) -> bool:
    """Whether the engine serves a network and was not told it may do so openly."""
    return not (allow_anonymous or is_loopback(host))


def check_exposure(host: str, allow_anonymous: bool, ring: KeyRing) -> None:
    """Refuse to serve on an address other than loopback with no key, unless told it may."""
    if ring.holds_keys or not exposed(host, allow_anonymous):
        return
    raise Exposed(
        f"refusing to serve on {host} with no API key: anyone who can reach it could trade."
        " Create one with `python -m orderengine keys create NAME`, or give"
        " ORDERENGINE_API_KEYS (owner:key,...) or ORDERENGINE_API_KEYS_FILE; or set"
        " ORDERENGINE_ALLOW_ANONYMOUS=true if it is meant to be open."
    )


@asynccontextmanager
async def keep_loaded(
    ring: KeyRing, keys: KeyStore, every_s: float
) -> AsyncIterator[Callable[[], None]]:
    """A callback for the listener: a key was created or revoked; the ring is reloaded.

    The callback only sets an event; a task reloads, once for the news heard meanwhile, and
    every `every_s` in any case, so that a lost notification leaves a revoked key working
    for one period at most. A failed reload is logged, and the keys stay as they were.
    """
    changed = asyncio.Event()
    reloading = _reload_when_changed(ring, keys, changed, every_s)
    task = asyncio.create_task(reloading, name="keys")
    try:
        yield changed.set
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _reload_when_changed(
    ring: KeyRing, keys: KeyStore, changed: asyncio.Event, every_s: float
) -> None:
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), every_s)
        changed.clear()
        try:
            await ring.load(keys)
        except Exception as error:
            log.warning("keys_not_reloaded", error=repr(error))


@lru_cache(maxsize=1024)
def names_this_machine(host: str | None) -> bool:
    """Whether a request's `Host` (a name or address, with or without a port) is this machine.

    `localhost`, a name under `.localhost`, or a loopback address: what a client on this
    machine may use to reach an engine listening on loopback. Asked on every request of an
    engine with no key, of the few names its clients use: remembered (2.8 µs to parse).
    """
    if not host:
        return False
    try:
        name = URL(f"http://{host}").host
    except ValueError:
        return False
    if name is None:
        return False
    name = name.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost") or is_loopback(name)


@lru_cache(maxsize=64)
def is_loopback(host: str) -> bool:
    """Whether the engine listens only on this machine: `localhost` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class KeySockets:
    """How many sockets each holder has open on this engine, up to `most` each.

    A holder is a key, or the tokens for single orders of one owner (`Caller.holder`).
    Sockets with no holder (no key in force) are not counted.
    """

    def __init__(self, most: int) -> None:
        self._most = most
        self._held: Counter[str] = Counter()

    @contextlib.contextmanager
    def held(self, holder: str | None) -> Iterator[None]:
        """Count a socket of `holder`'s while the block runs; `TooManySockets` if it may not."""
        if holder is None:
            yield
            return
        if self._held[holder] >= self._most:
            raise TooManySockets(
                f"{self._most} sockets are open on this engine with this key (or tokens for its"
                " orders), as many as may be; close one first"
            )
        self._held[holder] += 1
        try:
            yield
        finally:
            self._held[holder] -= 1
            if not self._held[holder]:
                del self._held[holder]
