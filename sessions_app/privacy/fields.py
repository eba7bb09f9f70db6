"""`EncryptedJSONField`: a JSON value stored encrypted (sessions_app/privacy/crypto.py) in a text column.

To code it behaves like `models.JSONField` (admin form, DRF serializer field, `instance.metadata`
is a dict); the database only ever sees ciphertext. Because the column is opaque, nothing can
filter on what is inside it: every lookup but `isnull` is refused, loudly, rather than silently
matching nothing. See docs/data-protection.md.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.query_utils import DeferredAttribute

from sessions_app.privacy.crypto import Ciphertext, DecryptionError, Undecryptable, decrypt_json, encrypt_json


class EncryptedValueError(DecryptionError):
    """A row whose encrypted value cannot be read; the message names the row."""


class _DecryptingAttribute(DeferredAttribute):
    """Raises, naming the row, when the value loaded for this instance could not be decrypted.

    A data descriptor (it has `__set__`), so every read comes through here even once the value
    sits in the instance's `__dict__`.
    """

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if isinstance(value, Undecryptable):
            raise EncryptedValueError(
                f"{instance._meta.verbose_name.capitalize()} {instance.pk}: {self.field.name} "
                f"cannot be decrypted: {value.reason}"
            )
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.field.attname] = value


class EncryptedJSONField(models.JSONField):
    descriptor_class = _DecryptingAttribute
    description = "A JSON value, encrypted at rest"

    def get_internal_type(self) -> str:
        return "TextField"  # the column holds a token (ASCII text: sessions_app/privacy/crypto.py)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None:
            return None
        try:
            return decrypt_json(value, self.decoder)
        except DecryptionError as exc:
            return Undecryptable(value, str(exc))

    def get_prep_value(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, Ciphertext):
            return str(value)
        if isinstance(value, Undecryptable):
            return value.ciphertext
        return encrypt_json(value, self.encoder)

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        return value if prepared else self.get_prep_value(value)

    def get_transform(self, name: str) -> Any:
        return None  # no key transforms: the database cannot see inside a ciphertext

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        return None
