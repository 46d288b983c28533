"""Pure types and logic: no asyncio, no I/O. Everything above builds on these values."""
