"""API credentials in memory. They never print: not in repr, str, logs, errors or pickles.

At rest they are stored encrypted by the client's key store; here they are only the values a
venue's auth needs to sign. ``repr`` shows the key's last four characters so a human can tell
two keys apart without the key leaking into a log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from marketlink.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Credentials:
    api_key: str = field(repr=False)
    api_secret: str | None = field(default=None, repr=False)  # HMAC secret
    private_key_pem: str | None = field(default=None, repr=False)  # Ed25519 private key (PEM)
    passphrase: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.api_key or not isinstance(self.api_key, str):
            raise ConfigError("credentials need an API key")
        if not self.api_secret and not self.private_key_pem:
            raise ConfigError("credentials need an API secret or a private key")

    @property
    def key_hint(self) -> str:
        return f"…{self.api_key[-4:]}" if len(self.api_key) > 8 else "…"

    def __repr__(self) -> str:
        kind = "ed25519" if self.private_key_pem else "hmac"
        return f"Credentials({kind}, key {self.key_hint})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("credentials are not picklable: they would leave the process in clear")
