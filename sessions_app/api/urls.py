from django.urls import path
from rest_framework.routers import SimpleRouter

from sessions_app.api import views
from sessions_app.api.event_endpoints import EventEndpointViewSet
from sessions_app.reports import api as reports

router = SimpleRouter()
router.register("sessions", views.SessionViewSet, basename="session")
router.register("contacts", views.ContactViewSet, basename="contact")
router.register("channels", views.ChannelViewSet, basename="channel")
router.register("characters", views.CharacterViewSet, basename="character")
router.register("event-endpoints", EventEndpointViewSet, basename="event-endpoint")

messages = views.SessionMessageViewSet.as_view({"get": "list", "post": "create"})

urlpatterns = [
    path("auth/token/", views.TokenView.as_view(), name="token-obtain"),
    path("auth/token/refresh/", views.TokenRefresh.as_view(), name="token-refresh"),
    path("sessions/<uuid:session_id>/messages/", messages, name="session-messages"),
    # Reports and export (sessions_app/reports/, docs/reports.md).
    path("sessions/export/", reports.SessionExportView.as_view(), name="session-export"),
    path("reports/summary/", reports.ReportSummaryView.as_view(), name="report-summary"),
    *router.urls,
]
