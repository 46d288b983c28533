"""What a user's machine holds for marketlink: the config directory and the encrypted key store.

``marketlink_home()`` finds (and creates, mode 0700) the directory; ``KeyStore`` keeps venue
keys encrypted under a password; ``verify_keys`` checks stored keys against the venue.
"""

from marketlink.client.home import HOME_ENV, journal_path, keystore_path, marketlink_home
from marketlink.client.keystore import (
    PASSWORD_ENV,
    KeyEntry,
    KeyStore,
    KeyStoreError,
    NoSuchKey,
    WrongPassword,
    password_from_env,
)

__all__ = [
    "HOME_ENV",
    "PASSWORD_ENV",
    "KeyEntry",
    "KeyStore",
    "KeyStoreError",
    "NoSuchKey",
    "WrongPassword",
    "journal_path",
    "keystore_path",
    "marketlink_home",
    "password_from_env",
]
