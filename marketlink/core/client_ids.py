"""Client order ids that never collide, even between bots sharing one account.

An id is ``prefix + readable + instance + counter``:

* ``prefix``: the configured prefix (a broker id such as Binance's ``x-...`` goes here);
* ``readable``: side and an abbreviation of the pair, for humans reading logs (``BBTCUSDT``);
* ``instance``: random per factory (40 bits by default), drawn at construction or given
  explicitly so a restarted bot (its journal keeps the id) recognises its own orders;
* ``counter``: strictly increasing per factory, seeded from wall-clock milliseconds so a
  restarted instance continues above its earlier ids, and ``max(last + 1, now)`` so it never
  repeats or goes back when the wall clock steps back.

Two processes on one account differ in ``instance``; one process never repeats ``counter``.
The uniqueness parts are fixed-width and at the end, so ``owns`` reads them from the right
whatever the readable part holds: an id from another instance never matches, whatever its
prefix. When the venue's maximum length is short, the readable part shrinks first (down to
nothing); the instance never goes below 35 bits; a prefix that leaves no room for that is a
``ConfigError`` at construction, not a surprise at the first order.

Instance and counter use Crockford's base32 digits, lower case when the venue allows it (upper
otherwise): no case-only distinctions, no look-alike letters, and ascending ASCII order, so ids
of one instance sort in issue order.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import string
import time
from collections.abc import Callable

from marketlink.core.enums import Side
from marketlink.core.errors import ConfigError, MarketlinkError
from marketlink.core.pairs import split_pair

__all__ = [
    "ALNUM",
    "ALNUM_DASH_UNDERSCORE",
    "COUNTER_CHARS",
    "INSTANCE_CHARS",
    "MIN_INSTANCE_CHARS",
    "ClientOrderIdFactory",
    "ForkedFactoryError",
]

ALNUM = string.ascii_letters + string.digits
ALNUM_DASH_UNDERSCORE = ALNUM + "-_"  # Binance spot, Bybit

_B32 = "0123456789abcdefghjkmnpqrstvwxyz"
_INT_DIGITS = "0123456789abcdefghijklmnopqrstuv"
INSTANCE_CHARS = 8  # 40 bits: ~1e-7 chance that any two of 100 bots on one key draw the same
MIN_INSTANCE_CHARS = 7  # 35 bits: below this we refuse rather than risk a collision
MAX_INSTANCE_CHARS = 16
COUNTER_CHARS = 8  # 40 bits of milliseconds since 2024-01-01: lasts until 2058 (_encode assumes 8)
_EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
_COUNTER_LIMIT = 32**COUNTER_CHARS


class ForkedFactoryError(MarketlinkError, RuntimeError):
    """A factory was used in a process forked after it was built; it would repeat the parent's ids."""


class ClientOrderIdFactory:
    """Makes client order ids for one bot instance; see the module docstring for the layout.

    ``alphabet`` is every character the venue accepts in a client id; ``last_counter`` is the
    highest counter this instance used before (from the journal, via ``counter_of``), so new ids
    are above it even if the clock went back across a restart. ``clock`` (wall seconds) and
    ``entropy`` (``n -> n random bytes``) are injectable for tests.
    """

    __slots__ = (
        "_clock", "_last", "_own", "_pairs", "_pid", "_readable_cache", "_readable_chars", "_room",
        "_side", "_to_int", "_upper", "alphabet", "instance_id", "max_length", "prefix",
    )

    def __init__(
        self,
        prefix: str,
        max_length: int,
        alphabet: str = ALNUM_DASH_UNDERSCORE,
        instance_id: str | None = None,
        *,
        last_counter: int = 0,
        clock: Callable[[], float] = time.time,
        entropy: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise ConfigError(f"max_length must be a positive int, got {max_length!r}")
        allowed = set(alphabet)
        if set(_B32) <= allowed:
            digits = _B32
        elif set(_B32.upper()) <= allowed:
            digits = _B32.upper()
        else:
            raise ConfigError("the venue's id alphabet must hold the digits and a full case of a-z")
        bad = sorted(set(prefix) - allowed)
        if bad:
            raise ConfigError(f"prefix {prefix!r} has characters the venue refuses: {bad}")
        if instance_id is None:
            width = min(INSTANCE_CHARS, max_length - len(prefix) - COUNTER_CHARS)
            if width < MIN_INSTANCE_CHARS:
                raise ConfigError(
                    f"prefix {prefix!r} is too long for ids of {max_length} characters: at most "
                    f"{max_length - MIN_INSTANCE_CHARS - COUNTER_CHARS} characters leave room for a "
                    "unique instance and counter"
                )
            instance_id = _random_instance(width, digits, entropy)
        elif not (MIN_INSTANCE_CHARS <= len(instance_id) <= MAX_INSTANCE_CHARS) or set(instance_id) - set(
            digits
        ):
            raise ConfigError(
                f"instance_id must be {MIN_INSTANCE_CHARS}-{MAX_INSTANCE_CHARS} characters of {digits!r}, "
                f"got {instance_id!r}"
            )
        room = max_length - len(prefix) - len(instance_id) - COUNTER_CHARS
        if room < 0:
            raise ConfigError(
                f"prefix {prefix!r} and instance {instance_id!r} exceed {max_length} characters"
            )
        if isinstance(last_counter, bool) or not isinstance(last_counter, int) or last_counter < 0:
            raise ConfigError(f"last_counter must be an int >= 0, got {last_counter!r}")
        upper = set(string.ascii_uppercase) <= allowed
        self.prefix = prefix
        self.max_length = max_length
        self.alphabet = alphabet
        self.instance_id = instance_id
        self._room = room  # characters left for the readable part
        self._upper = upper
        self._side = {Side.BUY: "B", Side.SELL: "S"} if upper else {Side.BUY: "b", Side.SELL: "s"}
        self._readable_chars = frozenset(
            c for c in (string.ascii_uppercase if upper else string.ascii_lowercase) + string.digits
            if c in allowed
        )
        self._last = last_counter
        self._clock = clock
        self._pid = os.getpid()
        self._readable_cache: dict[tuple[Side, str], str] = {}
        # What new() can produce, read back exactly: prefix, optional side + pair, instance, counter.
        chars = re.escape("".join(sorted(self._readable_chars)))
        sides = re.escape("".join(self._side.values()))
        self._own = re.compile(
            f"{re.escape(prefix)}(?:[{sides}][{chars}]*)?{re.escape(instance_id)}"
            f"([{re.escape(digits)}]{{{COUNTER_CHARS}}})"
        )
        self._to_int = str.maketrans(digits, _INT_DIGITS)  # our digits -> int(x, 32)'s digits
        self._pairs = [a + b for a in digits for b in digits]

    @property
    def last_counter(self) -> int:
        """The counter of the latest id issued (persist it to continue above it after a restart)."""
        return self._last

    def new(self, side: Side, trading_pair: str) -> str:
        if os.getpid() != self._pid:
            raise ForkedFactoryError("a client id factory cannot cross a fork: build one per process")
        now = self._clock()
        counter = self._last + 1
        if math.isfinite(now):
            counter = max(counter, int(now * 1000) - _EPOCH_MS)
        if counter >= _COUNTER_LIMIT:
            raise MarketlinkError("client order id counter exhausted (year 2058): widen COUNTER_CHARS")
        self._last = counter
        return f"{self.prefix}{self._readable(side, trading_pair)}{self.instance_id}{self._encode(counter)}"

    def owns(self, client_id: str | None) -> bool:
        """Whether ``client_id`` could have been issued by this factory (prefix and instance)."""
        return self.counter_of(client_id) is not None

    def counter_of(self, client_id: str | None) -> int | None:
        """The counter of an id this factory issued, or ``None`` if the id is not its own."""
        if not isinstance(client_id, str) or len(client_id) > self.max_length:
            return None
        match = self._own.fullmatch(client_id)
        if match is None:
            return None
        return int(match.group(1).translate(self._to_int), 32)

    def _readable(self, side: Side, trading_pair: str) -> str:
        key = (side, trading_pair)
        cached = self._readable_cache.get(key)
        if cached is None:
            cached = self._abbreviate(side, trading_pair)
            if len(self._readable_cache) >= 1024:  # a bot trades a few pairs; stay bounded anyway
                self._readable_cache.clear()
            self._readable_cache[key] = cached
        return cached

    def _abbreviate(self, side: Side, trading_pair: str) -> str:
        room = self._room
        if room == 0:
            return ""
        base, quote = split_pair(trading_pair)
        if not self._upper:
            base, quote = base.lower(), quote.lower()
        base = "".join(c for c in base if c in self._readable_chars)
        quote = "".join(c for c in quote if c in self._readable_chars)
        n = room - 1
        if len(base) + len(quote) > n:  # keep the head of each: "1000SHIBUSDT" -> "1000SUS"
            q = min(len(quote), n // 2)
            b = min(len(base), n - q)
            q = min(len(quote), n - b)
            base, quote = base[:b], quote[:q]
        return self._side[side] + base + quote

    def _encode(self, n: int) -> str:
        # Two digits (10 bits) per lookup: this is on the order-placement path.
        t = self._pairs
        return t[n >> 30 & 1023] + t[n >> 20 & 1023] + t[n >> 10 & 1023] + t[n & 1023]


def _random_instance(width: int, digits: str, entropy: Callable[[int], bytes]) -> str:
    need = math.ceil(width * 5 / 8)
    raw = entropy(need)
    if len(raw) < need:
        raise ConfigError(f"entropy source returned {len(raw)} bytes, {need} needed")
    n = int.from_bytes(raw, "big")
    out = []
    for _ in range(width):
        n, digit = divmod(n, 32)
        out.append(digits[digit])
    return "".join(out)
