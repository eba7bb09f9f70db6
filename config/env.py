"""Typed reads of environment variables that stop the process on a bad value.

Every setting the product takes comes through here, so a typo in a deployment fails at
start-up with the variable's name instead of misbehaving later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Env:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def get_str(self, name: str, default: str = "") -> str:
        value = self.raw(name)
        return default if value is None else value

    def get_bool(self, name: str, default: bool = False) -> bool:
        value = self.environ.get(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ImproperlyConfigured(f"{name} must be true or false (1/0, yes/no, on/off), not {value!r}")

    def get_int(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None
        if minimum is not None and number < minimum:
            raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
        if maximum is not None and number > maximum:
            raise ImproperlyConfigured(f"{name} must be at most {maximum}, not {number}")
        return number

    def get_list(self, name: str, default: list[str] | None = None) -> list[str]:
        value = self.raw(name)
        if value is None:
            return list(default or [])
        return [item.strip() for item in value.split(",") if item.strip()]

    def get_int_list(self, name: str, default: list[int], *, minimum: int | None = None) -> list[int]:
        """Comma-separated whole numbers, e.g. `5,300,1800`; at least one."""
        value = self.raw(name)
        if value is None:
            return list(default)
        items = [item.strip() for item in value.split(",") if item.strip()]
        try:
            numbers = [int(item) for item in items]
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} must be comma-separated whole numbers, not {value!r}"
            ) from None
        if not numbers:
            raise ImproperlyConfigured(f"{name} must list at least one number")
        if minimum is not None and any(number < minimum for number in numbers):
            raise ImproperlyConfigured(f"{name}: every number must be at least {minimum}, not {value!r}")
        return numbers

    def get_origin(self, name: str) -> str:
        """An origin such as https://sessions.example.com[:port], without a trailing slash or path."""
        value = self.raw(name)
        if value is None:
            return ""
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ImproperlyConfigured(f"{name} must look like https://host[:port], not {value!r}")
        if parts.path not in {"", "/"} or parts.query or parts.fragment:
            raise ImproperlyConfigured(
                f"{name} must be an origin only (scheme, host and port, no path), not {value!r}"
            )
        return f"{parts.scheme}://{parts.netloc}"
