# The API tests' clients and credentials (a JSON client, users, tokens, API keys).
from tests.api.conftest import (  # noqa: F401
    _fresh_cache,
    alice,
    alice_token,
    api,
    business_key,
    service_key,
    staff,
    staff_token,
)
