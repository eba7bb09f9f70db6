"""The native API, /api/v1/. Views validate and render; every decision is a service call."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from sessions_app.api import scope
from sessions_app.api.errors import Conflict
from sessions_app.api.filters import SessionFilter, SessionOrdering
from sessions_app.api.pagination import MessageCursorPagination, SessionCursorPagination
from sessions_app.api.serializers import (
    ChannelSerializer,
    CharacterSerializer,
    ContactSerializer,
    LinkMissionSerializer,
    MergeSerializer,
    MessageCreateSerializer,
    MessageSerializer,
    SessionCreateSerializer,
    SessionSerializer,
    SessionUpdateSerializer,
    SplitSerializer,
    TransitionSerializer,
    WindowReportSerializer,
)
from sessions_app.delivery.outbound import record_outbound_message
from sessions_app.ingest import window_report as reports
from sessions_app.ingest.channels import channel_for
from sessions_app.ingest.contacts import contact_for_user
from sessions_app.ingest.rule import InboundMessage, record_inbound_message
from sessions_app.lifecycle import boundaries
from sessions_app.lifecycle import sessions as session_ops
from sessions_app.lifecycle.transitions import transition_session
from sessions_app.models import Channel, Character, Contact, Direction, Message, Role, Session, SessionStatus
from sessions_app.search.statuses import SeveralStatuses


class StaffWriteOrReadOnly(permissions.BasePermission):
    def has_permission(self, request: Any, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in permissions.SAFE_METHODS or scope.is_staff(request)


def _transition_view(name: str, to_status: str) -> Any:
    def handler(self: SessionViewSet, request: Request, pk: str | None = None) -> Response:
        session = self.get_object()
        body = TransitionSerializer(data=request.data or {})
        body.is_valid(raise_exception=True)
        updated = transition_session(
            session, to_status, actor=scope.actor(request), reason=body.validated_data["reason"]
        )
        return Response(SessionSerializer(self._reload(updated)).data)

    handler.__name__ = name.replace("-", "_")
    # extend_schema after action: action() replaces the function's kwargs, where the schema is kept.
    return extend_schema(
        request=TransitionSerializer, responses=SessionSerializer, summary=f"{name.title()} a session"
    )(action(detail=True, methods=["post"], url_path=name)(handler))


@extend_schema_view(
    create=extend_schema(
        request=SessionCreateSerializer,
        # 200: the external_id named an existing session of this contact, answered as it is.
        responses={200: SessionSerializer, 201: SessionSerializer},
    ),
    update=extend_schema(request=SessionUpdateSerializer, responses=SessionSerializer),
    partial_update=extend_schema(request=SessionUpdateSerializer, responses=SessionSerializer),
)
class SessionViewSet(viewsets.ModelViewSet):
    serializer_class = SessionSerializer
    pagination_class = SessionCursorPagination
    filter_backends = [DjangoFilterBackend, SessionOrdering]
    filterset_class = SessionFilter
    ordering_fields = ["last_activity_at", "created_at", "message_count"]
    ordering = ["-last_activity_at"]
    lookup_value_regex = "[0-9a-fA-F-]{36}"
    queryset = Session.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self) -> QuerySet[Session]:
        if getattr(self, "swagger_fake_view", False):
            return Session.objects.none()
        return scope.visible_sessions(self.request).select_related("contact")

    def paginate_queryset(self, queryset: Any) -> Any:
        # Several statuses: a page is one index range per status, merged (search/statuses.py). The
        # filter has already validated them (and narrowed the queryset to them).
        statuses = set(self.request.query_params.getlist("status"))
        if len(statuses) > 1:
            queryset = SeveralStatuses(queryset, sorted(statuses))
        return super().paginate_queryset(queryset)

    def _reload(self, session: Session) -> Session:
        return self.get_queryset().get(pk=session.pk)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = SessionCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        contact_id = data.pop("contact", None)
        owner = scope.end_user(request)
        if scope.api_key_of(request) is not None or scope.is_staff(request):
            if contact_id is not None:
                contact = Contact.objects.filter(pk=contact_id).first()
                if contact is None:
                    raise ValidationError({"contact": [f"No contact {contact_id}."]})
            elif owner is not None:
                contact = contact_for_user(owner)
            else:
                raise ValidationError({"contact": ["Required when calling with an API key."]})
        else:
            if contact_id is not None:
                raise ValidationError({"contact": ["Users create sessions for themselves only."]})
            contact = contact_for_user(owner)
        key = scope.api_key_of(request)
        if key is not None and key.business_id and not data["business_id"]:
            data["business_id"] = key.business_id
        scope.check_business(request, data["business_id"])
        channel = channel_for(data.pop("channel_kind"), "")
        try:
            session, created = session_ops.create_session(
                channel,
                contact,
                owner=owner,
                external_id=data.pop("external_id", None),
                metadata=data.pop("metadata"),
                **data,
            )
        except session_ops.SessionIdTaken:
            raise Conflict(
                "This external_id belongs to another contact's session.", code="id_taken"
            ) from None
        return Response(
            SessionSerializer(self._reload(session)).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        session = self.get_object()
        body = SessionUpdateSerializer(data=request.data, partial=kwargs.get("partial", False))
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        updated = session_ops.update_session(session, metadata=data.pop("metadata", None), **data)
        return Response(SessionSerializer(self._reload(updated)).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        session_ops.delete_session(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=SessionSerializer, summary="Record user activity (no message)")
    @action(detail=True, methods=["post"])
    def activity(self, request: Request, pk: str | None = None) -> Response:
        session = session_ops.touch_activity(self.get_object())
        return Response(SessionSerializer(session).data)

    @extend_schema(request=LinkMissionSerializer, responses=SessionSerializer)
    @action(detail=True, methods=["post"], url_path="link-mission")
    def link_mission(self, request: Request, pk: str | None = None) -> Response:
        session = self.get_object()
        body = LinkMissionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        updated = session_ops.link_mission(session, body.validated_data["mission_id"])
        return Response(SessionSerializer(self._reload(updated)).data)

    @extend_schema(responses=SessionSerializer, summary="The caller's newest active session (404: none)")
    @action(detail=False, methods=["get"])
    def active(self, request: Request) -> Response:
        session = session_ops.newest_active_session(self.get_queryset())
        if session is None:
            raise NotFound("No active session.", code="no_active_session")
        return Response(SessionSerializer(session).data)

    def _check_may_reshape(self, request: Request) -> None:
        if scope.end_user(request) is not None and not scope.is_staff(request):
            raise PermissionDenied("Only staff and services merge or split sessions.")

    @extend_schema(
        request=MergeSerializer,
        responses=SessionSerializer,
        summary="Merge this session into another of the same contact and channel (answers the target)",
    )
    @action(detail=True, methods=["post"])
    def merge(self, request: Request, pk: str | None = None) -> Response:
        self._check_may_reshape(request)
        source = self.get_object()
        body = MergeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        into = body.validated_data["into"]
        target = self.get_queryset().filter(pk=into).first()
        if target is None:
            raise ValidationError({"into": [f"No session {into}."]})
        merged = boundaries.merge_sessions(source, target, actor=scope.actor(request))
        return Response(SessionSerializer(self._reload(merged)).data)

    @extend_schema(
        request=SplitSerializer,
        responses={201: SessionSerializer},
        summary="Split this session: the message named and every later one move to a new session",
    )
    @action(detail=True, methods=["post"])
    def split(self, request: Request, pk: str | None = None) -> Response:
        self._check_may_reshape(request)
        session = self.get_object()
        body = SplitSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        new = boundaries.split_session(session, body.validated_data["message_id"], actor=scope.actor(request))
        return Response(SessionSerializer(self._reload(new)).data, status=status.HTTP_201_CREATED)

    complete = _transition_view("complete", SessionStatus.COMPLETED)
    close = _transition_view("close", SessionStatus.CLOSED)
    resolve = _transition_view("resolve", SessionStatus.RESOLVED)
    archive = _transition_view("archive", SessionStatus.ARCHIVED)
    reopen = _transition_view("reopen", SessionStatus.ACTIVE)


@extend_schema_view(
    list=extend_schema(
        parameters=[OpenApiParameter("session_id", str, OpenApiParameter.PATH, description="Session id")]
    ),
    create=extend_schema(
        request=MessageCreateSerializer,
        responses={201: MessageSerializer},
        parameters=[OpenApiParameter("session_id", str, OpenApiParameter.PATH, description="Session id")],
    ),
)
class SessionMessageViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    """A session's messages, oldest first (`?ordering=-created_at` for newest first)."""

    serializer_class = MessageSerializer
    pagination_class = MessageCursorPagination
    filter_backends = [OrderingFilter]
    ordering_fields = ["created_at"]
    ordering = ["created_at"]

    def _session(self) -> Session:
        return get_object_or_404(scope.visible_sessions(self.request), pk=self.kwargs["session_id"])

    def get_queryset(self) -> QuerySet[Message]:
        if getattr(self, "swagger_fake_view", False):
            return Message.objects.none()
        return Message.objects.filter(session=self._session())

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        session = self._session()
        body = MessageCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        metadata = {"source": "http", **data["metadata"]}
        if data["direction"] == Direction.OUTBOUND:
            if scope.end_user(request) is not None and not scope.is_staff(request):
                raise PermissionDenied("Only staff and services send outbound messages.")
            message = record_outbound_message(session, data["content"], role=Role.STAFF, metadata=metadata)
        else:
            if session.contact is None:
                raise Conflict("This session has no contact to speak for.", code="no_contact")
            result = record_inbound_message(
                session.channel,
                session.contact,
                InboundMessage(content=data["content"], metadata=metadata),
                session_defaults=_defaults_like(session),
                preferred_session_id=session.pk,
            )
            message = result.message
        return Response(MessageSerializer(message).data, status=status.HTTP_201_CREATED)


def _defaults_like(session: Session) -> dict[str, Any]:
    """When the named session has ended, the new one the reuse rule opens keeps its context."""
    return {
        "owner": session.owner,
        "business_id": session.business_id,
        "location_id": session.location_id,
        "agent_id": session.agent_id,
    }


class ContactViewSet(viewsets.ModelViewSet):
    serializer_class = ContactSerializer
    lookup_value_regex = "[0-9]{1,18}"  # longer ids cannot exist and would overflow the database's integer
    permission_classes = [StaffWriteOrReadOnly]
    filter_backends = [OrderingFilter]
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]
    pagination_class = type("ContactPagination", (SessionCursorPagination,), {"ordering": "-created_at"})
    queryset = Contact.objects.none()

    def get_queryset(self) -> QuerySet[Contact]:
        if getattr(self, "swagger_fake_view", False):
            return Contact.objects.none()
        return scope.visible_contacts(self.request)


class ChannelViewSet(viewsets.ModelViewSet):
    serializer_class = ChannelSerializer
    lookup_value_regex = "[0-9]{1,18}"
    permission_classes = [StaffWriteOrReadOnly]
    pagination_class = None
    queryset = Channel.objects.none()

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return Channel.objects.none()
        return scope.visible_channels(self.request).order_by("kind", "address")

    @extend_schema(
        responses=WindowReportSerializer,
        summary="What-if window report: sessions each reuse window would have made of the stored inbound "
        "messages, and the gaps between them (staff)",
        parameters=[
            OpenApiParameter("windows", str, description="Comma-separated seconds (default 60,300,900)."),
            OpenApiParameter(
                "since", str, description="ISO 8601 with a zone (default: 30 days before until)."
            ),
            OpenApiParameter("until", str, description="ISO 8601 with a zone (default: now)."),
        ],
    )
    @action(detail=True, methods=["get"], url_path="window-report")
    def window_report(self, request: Request, pk: str | None = None) -> Response:
        if not scope.is_staff(request):
            raise PermissionDenied("Only staff read a channel's window report.")
        channel = self.get_object()
        params = request.query_params
        try:
            query = reports.ReportQuery.parse(
                params.get("windows"), params.get("since"), params.get("until"), now=timezone.now()
            )
        except reports.BadReportQuery as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None
        report = reports.window_report(channel, query.windows, query.since, query.until)
        return Response(report.as_dict())


class TokenView(TokenObtainPairView):
    """`username` + `password` → `access` and `refresh` JWTs."""


class TokenRefresh(TokenRefreshView):
    """`refresh` → a new `access` JWT."""


class StaffOnly(permissions.BasePermission):
    message = "Only staff manage characters."

    def has_permission(self, request: Any, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated) and scope.is_staff(request)


class CharacterViewSet(viewsets.ModelViewSet):
    """Seed 004's characters (personas): staff only, looked up by `config_id`."""

    serializer_class = CharacterSerializer
    permission_classes = [StaffOnly]
    pagination_class = None
    lookup_field = "config_id"
    lookup_value_regex = "[A-Za-z0-9_.:-]{1,128}"
    queryset = Character.objects.all()
