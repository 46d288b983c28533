"""Venue adapters: per venue a spec (data), a codec (pure functions) and an auth (signing).

No I/O here: the engine owns sockets, time and retries (ARCHITECTURE §4)."""
