"""Authenticated encryption for values stored at rest (Fernet: AES-128-CBC + HMAC-SHA256).

Keys come from the FIELD_ENCRYPTION_KEYS setting: the first key encrypts, every key decrypts
(`MultiFernet`), so a new key is put first, old rows keep decrypting, and `reencrypt_metadata`
moves them to the new key at leisure. See docs/data-protection.md.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionError(Exception):
    """A stored value that no configured key opens: a wrong or missing key, or an altered value."""


class Ciphertext(str):
    """A token that is already encrypted: written to the column as is (used by re-encryption)."""


def parse_keys(keys: Sequence[str]) -> list[Fernet]:
    """Fernet objects for `keys`; the error names the position, never the key itself."""
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is empty")
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS: key {position} is not a Fernet key (32 url-safe base64-encoded "
                "bytes, as `cryptography.fernet.Fernet.generate_key()` makes them)"
            ) from None
    return fernets


@functools.lru_cache(maxsize=4)
def _multifernet(keys: tuple[str, ...]) -> tuple[MultiFernet, Fernet]:
    fernets = parse_keys(keys)
    return MultiFernet(fernets), fernets[0]


def keyring() -> MultiFernet:
    """All configured keys (read from settings on every call, so a settings override applies)."""
    return _multifernet(tuple(settings.FIELD_ENCRYPTION_KEYS))[0]


def primary_key() -> Fernet:
    return _multifernet(tuple(settings.FIELD_ENCRYPTION_KEYS))[1]


def encrypt_json(value: Any, encoder: type[json.JSONEncoder] | None = None) -> str:
    plaintext = json.dumps(value, cls=encoder, separators=(",", ":"), ensure_ascii=False)
    return keyring().encrypt(plaintext.encode()).decode("ascii")


def decrypt_json(token: str, decoder: type[json.JSONDecoder] | None = None) -> Any:
    """The value inside `token`; raises DecryptionError if no configured key opens it."""
    try:
        plaintext = keyring().decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeEncodeError):
        raise DecryptionError(
            "no key in FIELD_ENCRYPTION_KEYS opens this value: the key that encrypted it is missing, "
            "or the stored value was altered"
        ) from None
    return json.loads(plaintext, cls=decoder)


def is_current(token: str) -> bool:
    """Whether `token` is already encrypted with the newest (first) key."""
    try:
        primary_key().decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeEncodeError):
        return False
    return True


def rotate(token: str) -> Ciphertext:
    """`token` re-encrypted with the newest key (its original timestamp kept)."""
    try:
        return Ciphertext(keyring().rotate(token.encode("ascii")).decode("ascii"))
    except (InvalidToken, UnicodeEncodeError):
        raise DecryptionError(
            "no key in FIELD_ENCRYPTION_KEYS opens this value: the key that encrypted it is missing, "
            "or the stored value was altered"
        ) from None


class Undecryptable(Mapping[str, Any]):
    """Stands in for a value no key opens. Reading it raises, so it can never pass for real data.

    Model instances never hand it out: the field's descriptor raises first, naming the row. It is
    what `.values("metadata")` returns for such a row.
    """

    def __init__(self, ciphertext: str, reason: str) -> None:
        self.ciphertext = ciphertext
        self.reason = reason

    def _fail(self) -> DecryptionError:
        return DecryptionError(self.reason)

    def __getitem__(self, key: str) -> Any:
        raise self._fail()

    def __iter__(self) -> Iterator[str]:
        raise self._fail()

    def __len__(self) -> int:
        raise self._fail()

    def __repr__(self) -> str:
        return "<undecryptable value>"
