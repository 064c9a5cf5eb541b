"""The simulated market: prices every engine on one chain computes alike, without talking.

Each pool's market price is its anchor times `exp(deviation)`, where the deviation is a
mean-reverting random walk that takes one step every `STEP_S` seconds: each step keeps
`1 - MEAN_REVERSION` of the deviation and adds a normal shock of `volatility_bps`. A shock is
not drawn from a generator each process advances on its own: it is a hash of the chain's seed,
the pool and the step's number. So the deviation at a moment is a function of the seed and
of the moment alone, and engines that share a chain (and so its seed) see one market.

The deviation at a step is the walk's sum over the last `WINDOW` shocks, each weighted by
`(1 - MEAN_REVERSION) ** age`: an older shock would weigh less than a millionth of a fresh
one. It is summed with `math.fsum`, correctly rounded, so that it is the same float however
it was reached. Binary floats are right here for the reason pool.py gives: the walk moves the
simulation's own state, never an amount.
"""

from __future__ import annotations

import hashlib
import math
import random

STEP_S = 1.0
"""How often the market price takes a step, in seconds."""
MEAN_REVERSION = 0.05
"""Share of the distance to its anchor the market price closes per step."""
WINDOW = 300
"""Shocks summed for a deviation: `(1 - MEAN_REVERSION) ** WINDOW` is about 2e-7."""
WEIGHTS = tuple((1 - MEAN_REVERSION) ** age for age in range(WINDOW))
KEPT_STEPS = 4 * WINDOW
"""Shocks and deviations a walk keeps before it forgets the oldest."""


def shock(seed: int, key: str, step: int) -> float:
    """A standard normal draw that depends on its arguments alone (Box–Muller on a hash)."""
    digest = hashlib.blake2b(f"{seed}:{key}:{step}".encode(), digest_size=16).digest()
    uniform = (int.from_bytes(digest[:8]) + 1) / 2**64
    angle = int.from_bytes(digest[8:]) / 2**64
    return math.sqrt(-2 * math.log(uniform)) * math.cos(2 * math.pi * angle)


def step_of(now: float) -> int:
    """The number of the step the market is in at `now` (seconds on the shared clock)."""
    return math.floor(now / STEP_S)


class _Walk:
    """One pool's walk: its shocks and deviations, cached by step."""

    def __init__(self, seed: int, key: str) -> None:
        self._seed, self._key = seed, key
        self._shocks: dict[int, float] = {}
        self._deviations: dict[int, float] = {}

    def deviation(self, step: int) -> float:
        """The walk's deviation (log of market over anchor, per unit of volatility)."""
        found = self._deviations.get(step)
        if found is None:
            found = math.fsum(
                weight * self._shock(step - age) for age, weight in enumerate(WEIGHTS)
            )
            self._deviations[step] = found
            self._forget_before(step - KEPT_STEPS)
        return found

    def _shock(self, step: int) -> float:
        found = self._shocks.get(step)
        if found is None:
            found = self._shocks[step] = shock(self._seed, self._key, step)
        return found

    def _forget_before(self, oldest: int) -> None:
        if len(self._shocks) > 2 * KEPT_STEPS:
            self._shocks = {step: s for step, s in self._shocks.items() if step >= oldest}
            self._deviations = {step: d for step, d in self._deviations.items() if step >= oldest}


class Market:
    """The market of one chain's seed: every pool's deviation at any moment.

    Keys name the pools (their addresses). `volatility_bps` is a step's standard deviation.
    """

    def __init__(self, seed: int, volatility_bps: float) -> None:
        self.seed = seed
        self._scale = volatility_bps / 10_000
        self._walks: dict[str, _Walk] = {}
        self._moves: dict[str, tuple[int, tuple[float, ...]]] = {}
        """Each pool's last moves asked for, by the step they were asked in."""

    def deviation(self, key: str, now: float) -> float:
        """`log(market / anchor)` for the pool `key` at `now`."""
        return self._at(key, step_of(now))

    def moves(self, key: str, now: float, count: int) -> tuple[float, ...]:
        """The relative moves of the pool's market in its last `count` steps, newest first.

        They change only when the market takes a step, and a pool's quotes, and the swaps
        after them, ask for them many times within one: each pool's last are kept for their
        step. Working them out again was most of a quote's time on a venue whose fee they set.
        """
        step = step_of(now)
        kept = self._moves.get(key)
        if kept is not None and kept[0] == step and len(kept[1]) == count:
            return kept[1]
        deviations = [self._at(key, step - back) for back in range(count + 1)]
        moves = tuple(math.expm1(deviations[n] - deviations[n + 1]) for n in range(count))
        self._moves[key] = (step, moves)
        return moves

    def draw(self, *names: str) -> random.Random:
        """A generator of its own for a choice the seed fixes, named by `names`."""
        return random.Random(":".join((str(self.seed), *names)))

    def _at(self, key: str, step: int) -> float:
        if self._scale == 0:
            return 0.0
        walk = self._walks.get(key)
        if walk is None:
            walk = self._walks[key] = _Walk(self.seed, key)
        return self._scale * walk.deviation(step)
