"""Who is on the other end of a socket, and which sessions' events each joined topic shows.

- staff (login or JWT): every session on the staff topics (`staff:sessions`, the business-wide
  `staff:business:{businessId}`); on `messages:{businessId}` the one user named by the socket's
  `userId` param;
- a user's JWT: the sessions they own;
- a minted socket token (`realtime/tokens.py`): its one chat user in its one business;
- a bare API key: only with a `userId` param, and then that user's sessions (in the key's business,
  if it is limited to one).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.db.models import QuerySet
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken

from sessions_app.api.keys import looks_like_key, verify_key
from sessions_app.ingest.chat import chat_user_sessions
from sessions_app.models import Session
from sessions_app.realtime.tokens import looks_like_socket_token, read_socket_token


class Refused(Exception):
    """A topic this socket may not join; the message is the reason its client is told."""


@dataclass(frozen=True)
class Audience:
    """Which sessions' events one joined topic relays: everything, a logged-in user's own sessions,
    or one chat user (`businessId` + `userId`, as seed 001 names them)."""

    everything: bool = False
    owner_id: int | None = None
    business_id: str = ""
    chat_user: str = ""

    def admits(self, business_id: str, owner_id: int | None, chat_user: str) -> bool:
        if self.everything:
            return True
        if self.owner_id is not None:
            return owner_id == self.owner_id
        return bool(self.chat_user) and chat_user == self.chat_user and business_id == self.business_id


EVERYTHING = Audience(everything=True)


@dataclass(frozen=True)
class Principal:
    kind: str  # "staff" | "user" | "api_key" | "socket_token"
    label: str
    user_id: int | None = None
    username: str = ""
    business_id: str | None = None  # a limited API key's business, or a socket token's
    chat_user: str = ""  # the one chat user this socket is scoped to (token, or `userId` param)

    def scoped_to(self, requested_user: str) -> Principal:
        """This principal on a socket opened with `userId=requested_user` (empty: none given)."""
        if not requested_user:
            return self
        if self.kind in ("staff", "api_key"):
            return replace(self, chat_user=requested_user)
        own = self.username if self.kind == "user" else self.chat_user
        if requested_user != own:
            raise Refused(f"this socket is scoped to userId {own!r}; it may not ask for another user")
        return self

    def audience_in_business(self, business_id: str) -> Audience:
        """The audience of `messages:{business_id}` for this socket, or Refused with the reason."""
        if self.kind == "user":
            return Audience(owner_id=self.user_id)
        if self.kind == "socket_token":
            if business_id != self.business_id:
                raise Refused(f"unauthorized: this socket token is for business {self.business_id!r}")
            return Audience(business_id=business_id, chat_user=self.chat_user)
        if self.kind == "api_key" and self.business_id and business_id != self.business_id:
            raise Refused("unauthorized")
        if not self.chat_user:
            if self.kind == "staff":
                raise Refused(
                    "a messages topic shows one user's sessions: connect with a userId param, "
                    f"or join staff:business:{business_id} for the business-wide feed"
                )
            raise Refused(
                "an API key socket must connect with a userId param and is then scoped to that user; "
                "browsers connect with a socket token (POST /agent/api/socket-token)"
            )
        return Audience(business_id=business_id, chat_user=self.chat_user)

    def audience_of_session(self, session: Session) -> Audience:
        """The audience of `session:{id}`, or Refused when this socket may not see that session."""
        if self.kind == "staff":
            return EVERYTHING
        refused = Refused("unauthorized or unknown session")
        try:
            audience = self.audience_in_business(session.business_id)
        except Refused:
            raise refused from None
        contact = session.contact
        chat_user = contact.external_user_id if contact and contact.business_id == session.business_id else ""
        if not audience.admits(session.business_id, session.owner_id, chat_user):
            raise refused
        return audience

    def visible_sessions(self) -> QuerySet[Session]:
        """The sessions this socket may write into (the API's scope, narrowed to its chat user)."""
        if self.kind == "staff":
            return Session.objects.all()
        if self.kind == "user":
            return Session.objects.filter(owner_id=self.user_id)
        if self.kind == "socket_token":
            return chat_user_sessions(self.business_id or "", self.chat_user)
        sessions = Session.objects.all()
        if self.business_id:
            sessions = sessions.filter(business_id=self.business_id)
        if self.chat_user:
            sessions = sessions.filter(contact__external_user_id=self.chat_user)
        return sessions


def principal_for_user(user: Any) -> Principal | None:
    if user is None or isinstance(user, AnonymousUser) or not user.is_active:
        return None
    kind = "staff" if user.is_staff else "user"
    name = user.get_username()
    return Principal(kind=kind, label=f"{kind}:{name}", user_id=user.pk, username=name)


def principal_for_token(token: str) -> Principal | None:
    """A service API key, a minted socket token, or a user's JWT access token (simplejwt)."""
    if not token:
        return None
    if looks_like_key(token):
        key = verify_key(token)
        if key is None:
            return None
        return Principal(kind="api_key", label=f"api-key:{key.name}", business_id=key.business_id or None)
    if looks_like_socket_token(token):
        grant = read_socket_token(token)
        if grant is None:
            return None
        return Principal(
            kind="socket_token",
            label=f"socket-token:{grant.key_name}",
            business_id=grant.business_id,
            chat_user=grant.user_id,
        )
    try:
        access = AccessToken(token)  # type: ignore[arg-type]
    except TokenError:
        return None
    user = get_user_model().objects.filter(pk=access.get(api_settings.USER_ID_CLAIM)).first()
    return principal_for_user(user)
