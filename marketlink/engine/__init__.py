"""The venue-agnostic connector engine: all I/O, timing and retries live here, above the pure core."""
