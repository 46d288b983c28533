"""Venues by name: what ``marketlink.connect("binance", ...)`` looks up.

A user names a venue with a string (from a config file, a command line), so something must turn
the name into the venue's spec, codec and auth, and into the sandbox's endpoints for it. That is
this table and nothing else. Built-in venues are listed by module path and imported on first
use, so naming one venue never imports the others (nor their crypto dependencies), and
``import marketlink`` stays cheap. A venue module registers by exposing two names:

* ``VENUE``: the ``Venue`` (spec, codec, how to build its auth), with ``VENUE.name`` equal to
  the name it is registered under, so events and status name the venue the user asked for;
* ``local_endpoints(base_url)``: its endpoints on a sandbox listening at ``base_url``.

A new venue adds one line to ``BUILTIN`` (or calls ``register`` from its own package, for a
venue that lives outside marketlink).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Final

from marketlink.core.errors import ConfigError
from marketlink.venues.base import Endpoints, Venue

__all__ = [
    "BUILTIN",
    "REGISTRY",
    "VenueEntry",
    "VenueRegistry",
    "known_venues",
    "lookup",
    "register",
]

#: Venue name -> the module that defines ``VENUE`` and ``local_endpoints``.
BUILTIN: Final[Mapping[str, str]] = {
    "binance": "marketlink.venues.binance",
}

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")


@dataclass(frozen=True, slots=True)
class VenueEntry:
    """One registered venue: what the engine needs, and where it lives on a sandbox."""

    name: str
    venue: Venue
    local_endpoints: Callable[[str], Endpoints]

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(sorted(self.venue.spec.domains))


def _canonical(name: object) -> str:
    """Venue names are case-insensitive identifiers: ``Binance`` and ``binance`` are one venue."""
    if not isinstance(name, str):
        raise ConfigError(f"a venue name is a string, got {name!r}")
    key = name.strip().lower()
    if not _NAME.match(key):
        raise ConfigError(f"{name!r} is not a venue name (letters, digits and _, starting with a letter)")
    return key


class VenueRegistry:
    """Names to venues. Lookups of a lazily listed venue import its module once."""

    def __init__(self, modules: Mapping[str, str] | None = None) -> None:
        self._modules: dict[str, str] = {_canonical(k): v for k, v in (modules or {}).items()}
        self._entries: dict[str, VenueEntry] = {}

    def names(self) -> tuple[str, ...]:
        return tuple(sorted({*self._modules, *self._entries}))

    def __contains__(self, name: object) -> bool:
        try:
            key = _canonical(name)
        except ConfigError:
            return False
        return key in self._modules or key in self._entries

    def register(
        self, venue: Venue, local_endpoints: Callable[[str], Endpoints], *, replace: bool = False
    ) -> VenueEntry:
        """Register ``venue`` under ``venue.name``. Registering a name twice is refused unless
        ``replace``: two packages claiming one name is a mistake to hear about, not to resolve
        silently by import order."""
        key = _canonical(venue.name)
        if not replace and (key in self._entries or key in self._modules):
            raise ConfigError(f"venue {key!r} is already registered")
        if not callable(local_endpoints):
            raise ConfigError(f"venue {key!r}: local_endpoints must be callable")
        entry = VenueEntry(key, venue, local_endpoints)
        self._modules.pop(key, None)
        self._entries[key] = entry
        return entry

    def unregister(self, name: str) -> None:
        key = _canonical(name)
        self._entries.pop(key, None)
        self._modules.pop(key, None)

    def lookup(self, name: str) -> VenueEntry:
        """The venue called ``name``; ``ConfigError`` listing the known venues otherwise."""
        key = _canonical(name)
        entry = self._entries.get(key)
        if entry is not None:
            return entry
        module_name = self._modules.get(key)
        if module_name is None:
            known = ", ".join(self.names()) or "none"
            raise ConfigError(f"unknown venue {name!r} (known venues: {known})")
        entry = self._load(key, importlib.import_module(module_name))
        self._entries[key] = entry
        del self._modules[key]
        return entry

    @staticmethod
    def _load(key: str, module: ModuleType) -> VenueEntry:
        venue = getattr(module, "VENUE", None)
        local = getattr(module, "local_endpoints", None)
        if not isinstance(venue, Venue) or not callable(local):
            raise ConfigError(f"venue module {module.__name__} must define VENUE and local_endpoints")
        if _canonical(venue.name) != key:
            raise ConfigError(f"venue module {module.__name__} defines {venue.name!r}, not {key!r}")
        return VenueEntry(key, venue, local)


#: The registry ``marketlink.connect`` uses.
REGISTRY: Final = VenueRegistry(BUILTIN)


def lookup(name: str) -> VenueEntry:
    return REGISTRY.lookup(name)


def register(
    venue: Venue, local_endpoints: Callable[[str], Endpoints], *, replace: bool = False
) -> VenueEntry:
    return REGISTRY.register(venue, local_endpoints, replace=replace)


def known_venues() -> tuple[str, ...]:
    """The names ``connect`` accepts, sorted."""
    return REGISTRY.names()
