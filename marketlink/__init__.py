"""marketlink: exchange connectors with exact money, explicit state and a local sandbox."""

__version__ = "0.1.0"
