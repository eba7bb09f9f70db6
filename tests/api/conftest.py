from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from sessions_app.api.keys import issue_key
from tests.factories import UserFactory

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fresh_cache():
    # The failed-authentication counters live in the cache; each test starts from none.
    cache.clear()
    yield
    cache.clear()


class Api:
    """A JSON client: `api.post(path, body, auth=token)`; returns the response with `.json()`."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def request(self, method: str, path: str, body: Any = None, auth: str | None = None, **extra: Any):
        headers = dict(extra)
        if auth:
            headers["HTTP_AUTHORIZATION"] = auth if " " in auth else f"Bearer {auth}"
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs = {"data": json.dumps(body), "content_type": "application/json"}
        return getattr(self.client, method)(path, **kwargs, **headers)

    def get(self, path: str, **kw: Any):
        return self.request("get", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any):
        return self.request("post", path, body if body is not None else {}, **kw)

    def put(self, path: str, body: Any = None, **kw: Any):
        return self.request("put", path, body if body is not None else {}, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any):
        return self.request("patch", path, body if body is not None else {}, **kw)

    def delete(self, path: str, **kw: Any):
        return self.request("delete", path, **kw)


@pytest.fixture
def api(client: Client) -> Api:
    return Api(client)


def token_for(api: Api, username: str) -> str:
    response = api.post("/api/v1/auth/token/", {"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.content
    return response.json()["access"]


@pytest.fixture
def alice(db):
    return UserFactory(username="alice")


@pytest.fixture
def bob(db):
    return UserFactory(username="bob")


@pytest.fixture
def alice_token(api, alice) -> str:
    return token_for(api, "alice")


@pytest.fixture
def bob_token(api, bob) -> str:
    return token_for(api, "bob")


@pytest.fixture
def staff(db):
    user = UserFactory(username="staffer", is_staff=True)
    return user


@pytest.fixture
def staff_token(api, staff) -> str:
    return token_for(api, "staffer")


@pytest.fixture
def service_key(db) -> str:
    return issue_key("crm")[1]


@pytest.fixture
def business_key(db) -> str:
    return issue_key("b1-only", business_id="B1")[1]
