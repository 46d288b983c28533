"""The ``marketlink`` command."""
