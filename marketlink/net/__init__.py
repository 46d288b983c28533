"""Network layer: HTTP and WebSocket clients, the throttler, time sync and typed errors."""
