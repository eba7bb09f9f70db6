"""Authenticated encryption for values stored at rest: AES-256-GCM, and Fernet tokens still read.

Keys come from the FIELD_ENCRYPTION_KEYS setting (Fernet keys: 32 url-safe base64-encoded bytes).
The first key encrypts, every key decrypts, so a new key is put first, old rows keep decrypting,
and `reencrypt_metadata` moves them to the new key at leisure.

A value is written as `v2:` and the url-safe base64 of a random 96-bit nonce followed by its
AES-256-GCM ciphertext and tag, under a key derived from the configured key with HKDF-SHA256 (so
the configured key's bytes are never used directly by two algorithms). Values written before
(Fernet tokens: AES-128-CBC plus HMAC-SHA256, under the same configured keys) still decrypt, and
`reencrypt_metadata` rewrites them in the new form. Why the change: docs/data-protection.md.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# Cannot begin a Fernet token, whose url-safe base64 has no colon.
GCM_PREFIX = "v2:"
NONCE_BYTES = 12
_HKDF_INFO = b"sessions_app field encryption: AES-256-GCM, v2"
_UNOPENED = (
    "no key in FIELD_ENCRYPTION_KEYS opens this value: the key that encrypted it is missing, "
    "or the stored value was altered"
)


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


@dataclass(frozen=True)
class _Keys:
    fernet: MultiFernet  # reads values written before v2
    gcm: tuple[AESGCM, ...]  # newest first: the first encrypts


def _derived_key(key: str) -> AESGCM:
    material = base64.urlsafe_b64decode(key)
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(material))


@functools.lru_cache(maxsize=4)
def _keys(configured: tuple[str, ...]) -> _Keys:
    return _Keys(MultiFernet(parse_keys(configured)), tuple(_derived_key(key) for key in configured))


def _current_keys() -> _Keys:
    """All configured keys (read from settings on every call, so a settings override applies)."""
    return _keys(tuple(settings.FIELD_ENCRYPTION_KEYS))


def _encrypt(plaintext: bytes, keys: _Keys) -> str:
    nonce = os.urandom(NONCE_BYTES)
    sealed = keys.gcm[0].encrypt(nonce, plaintext, None)
    return GCM_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def _open(token: str, keys: _Keys, *, newest_only: bool = False) -> bytes:
    if token.startswith(GCM_PREFIX):
        try:
            raw = base64.urlsafe_b64decode(token[len(GCM_PREFIX) :])
        except (binascii.Error, ValueError):
            raise DecryptionError(_UNOPENED) from None
        nonce, sealed = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
        for key in keys.gcm[:1] if newest_only else keys.gcm:
            try:
                return key.decrypt(nonce, sealed, None)
            except (InvalidTag, ValueError):
                continue
        raise DecryptionError(_UNOPENED)
    if newest_only:
        raise DecryptionError("not in the current form")
    try:
        return keys.fernet.decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeEncodeError):
        raise DecryptionError(_UNOPENED) from None


def encrypt_json(value: Any, encoder: type[json.JSONEncoder] | None = None) -> str:
    plaintext = json.dumps(value, cls=encoder, separators=(",", ":"), ensure_ascii=False)
    return _encrypt(plaintext.encode(), _current_keys())


def decrypt_json(token: str, decoder: type[json.JSONDecoder] | None = None) -> Any:
    """The value inside `token`; raises DecryptionError if no configured key opens it."""
    return json.loads(_open(token, _current_keys()), cls=decoder)


def is_current(token: str) -> bool:
    """Whether `token` is already in the current form, under the newest (first) key."""
    try:
        _open(token, _current_keys(), newest_only=True)
    except DecryptionError:
        return False
    return True


def rotate(token: str) -> Ciphertext:
    """`token`'s value encrypted again, in the current form and with the newest key."""
    keys = _current_keys()
    return Ciphertext(_encrypt(_open(token, keys), keys))


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
