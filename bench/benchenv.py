"""What every benchmark gives the product: production mode, with bench-only values that are not secrets."""

from __future__ import annotations

from cryptography.fernet import Fernet

# Bench-only, not a secret: the seeding scripts and the benchmarks that read their rows must agree
# on the key that encrypts session metadata.
BENCH_FIELD_KEY = "YmVuY2gtb25seS1rZXktbm90LWEtc2VjcmV0LTAwMDA="


def empty_metadata_token() -> str:
    """`{}` as an encrypted Session.metadata column holds it (see sessions_app/crypto.py)."""
    return Fernet(BENCH_FIELD_KEY.encode()).encrypt(b"{}").decode("ascii")
