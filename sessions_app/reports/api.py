"""The reports' API: `GET /api/v1/reports/summary/` and `GET /api/v1/sessions/export/` (docs/reports.md).

Both see what the caller may see (`api/scope.py`): staff and unlimited keys everything, a key limited
to a business that business, an end user their own sessions.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sessions_app.api import scope
from sessions_app.api.filters import SessionFilter
from sessions_app.models import ChannelKind, Session
from sessions_app.reports import export
from sessions_app.reports.metrics import Selection
from sessions_app.reports.summary import GROUPINGS, summarise

MAX_DAYS = 731
DEFAULT_DAYS = 30


class JsonOnly:
    """Errors are JSON whatever `format` says: `format` picks the export's format, not a renderer
    (DRF would otherwise read it as its URL_FORMAT_OVERRIDE and answer 404 for csv)."""

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[Any, str]:
        renderer = JSONRenderer()
        return renderer, renderer.media_type


# --- Summary ------------------------------------------------------------------------------------------


class SummaryQuery(serializers.Serializer):
    since = serializers.DateField(
        required=False,
        help_text=f"First day (YYYY-MM-DD, in `tz`); default: {DEFAULT_DAYS - 1} days before `until`.",
    )
    until = serializers.DateField(required=False, help_text="Last day, included; default: today in `tz`.")
    channel = serializers.MultipleChoiceField(
        choices=ChannelKind.choices, required=False, help_text="Channel kind; repeat for several."
    )
    business_id = serializers.CharField(required=False, max_length=128)
    group_by = serializers.ChoiceField(
        choices=GROUPINGS, default="day", help_text="by_day or by_week (ISO weeks)."
    )
    tz = serializers.CharField(
        required=False,
        max_length=64,
        help_text="IANA time zone of the days, e.g. Europe/Paris; default: the TIME_ZONE setting. Other "
        "zones than TIME_ZONE are computed live (slower over long ranges).",
    )

    def validate_tz(self, value: str) -> ZoneInfo:
        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise serializers.ValidationError(
                f"Unknown time zone {value!r}; use an IANA name like Europe/Paris."
            ) from None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        tz: ZoneInfo = attrs.get("tz") or ZoneInfo(settings.TIME_ZONE)
        until: date = attrs.get("until") or timezone.now().astimezone(tz).date()
        since: date = attrs.get("since") or until - timedelta(days=DEFAULT_DAYS - 1)
        if since > until:
            raise serializers.ValidationError({"since": ["Must not be after `until`."]})
        if (until - since).days + 1 > MAX_DAYS:
            raise serializers.ValidationError({"since": [f"A report covers at most {MAX_DAYS} days."]})
        return {**attrs, "tz": tz, "since": since, "until": until}


class DurationStats(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True, help_text="Median, seconds (null: no session).")
    p90 = serializers.FloatField(allow_null=True)
    mean = serializers.FloatField(allow_null=True)
    count = serializers.IntegerField(help_text="Sessions measured.")


class FiguresShape(serializers.Serializer):
    """metrics.Figures as JSON (a test checks these fields are exactly its figures)."""

    sessions_opened = serializers.IntegerField()
    messages_inbound = serializers.IntegerField()
    messages_outbound = serializers.IntegerField()
    abandoned = serializers.IntegerField(help_text="Transitions into abandoned.")
    reopened = serializers.IntegerField(help_text="Transitions into active from closed or resolved.")
    merged = serializers.IntegerField(help_text="Transitions into merged.")
    agent_only_sessions = serializers.IntegerField(
        help_text="Sessions with an agent reply and no staff message."
    )
    staff_replies = serializers.IntegerField(help_text="Outbound messages by staff.")
    first_response_seconds = DurationStats()
    resolution_seconds = DurationStats()


class PeriodShape(FiguresShape):
    day = serializers.DateField(required=False, help_text="The day (group_by=day).")
    week = serializers.DateField(required=False, help_text="The Monday of the week (group_by=week).")


class ComputedShape(serializers.Serializer):
    rollup_days = serializers.IntegerField(
        help_text="Days read from the rollup: past days, and today while its provisional rollup is at "
        "most REPORTS_TODAY_MAX_AGE seconds old."
    )
    live_days = serializers.IntegerField(help_text="Days computed from the rows themselves.")


class SummaryShape(FiguresShape):
    since = serializers.DateField()
    until = serializers.DateField()
    time_zone = serializers.CharField()
    group_by = serializers.ChoiceField(choices=GROUPINGS)
    by_day = PeriodShape(many=True, required=False)
    by_week = PeriodShape(many=True, required=False)
    computed = ComputedShape()


def selection_for(request: Request, kinds: list[str] | set[str], business_id: str | None) -> Selection:
    """The caller's visibility narrowed by the asked channel kinds and business: a limited key asking
    for another business sees nothing, as the session list does."""
    visible = scope.visibility(request)
    empty = False
    if visible.business_id is not None:
        empty = business_id is not None and business_id != visible.business_id
        business_id = visible.business_id
    return Selection(
        kinds=tuple(sorted(kinds)), business_id=business_id, owner_id=visible.owner_id, empty=empty
    )


class ReportSummaryView(JsonOnly, APIView):
    @extend_schema(parameters=[SummaryQuery], responses=SummaryShape, summary="Report figures over a range")
    def get(self, request: Request) -> Response:
        query = SummaryQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        selection = selection_for(request, params.get("channel", ()), params.get("business_id"))
        summary = summarise(params["since"], params["until"], params["tz"], selection, params["group_by"])
        return Response(summary.as_dict())


# --- Export -------------------------------------------------------------------------------------------


class ExportQuery(serializers.Serializer):
    format = serializers.ChoiceField(choices=export.FORMATS, default="csv")
    transcripts = serializers.BooleanField(
        default=False, help_text="Each line with its `messages` (format=jsonl only)."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["transcripts"] and attrs["format"] != "jsonl":
            raise serializers.ValidationError({"transcripts": ["Only with format=jsonl."]})
        return attrs


class SessionExportView(JsonOnly, generics.GenericAPIView):
    """Every session the list's filters select, streamed oldest first as CSV or JSON lines."""

    filter_backends = [DjangoFilterBackend]
    filterset_class = SessionFilter
    queryset = Session.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self) -> QuerySet[Session]:
        if getattr(self, "swagger_fake_view", False):
            return Session.objects.none()
        return scope.visible_sessions(self.request)

    @extend_schema(
        parameters=[ExportQuery],
        responses={
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="A header row, then a row per session."
            ),
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.STR, description="A session per line."
            ),
        },
        summary="Export sessions (streamed)",
        filters=True,  # the session list's filters, though the answer is not a JSON list
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        query = ExportQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        fmt, transcripts = query.validated_data["format"], query.validated_data["transcripts"]
        sessions = self.filter_queryset(self.get_queryset())
        response = StreamingHttpResponse(
            export.chunks(sessions, fmt, transcripts=transcripts), content_type=export.CONTENT_TYPES[fmt]
        )
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="sessions-{stamp}.{fmt}"'
        return response
