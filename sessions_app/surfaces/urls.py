"""The seeds' contracts, each under its own base path (see docs/api-surfaces.md)."""

from django.urls import path, re_path

from sessions_app.surfaces import agent_api, characters_api, sessions_webhook, workspace_api

agent_urls = [
    path("messages", agent_api.MessagesView.as_view(), name="agent-messages"),
    path(
        "sessions/business/<str:business_id>/user/<str:user_id>/active",
        agent_api.ActiveSessionView.as_view(),
        name="agent-active",
    ),
    path(
        "sessions/business/<str:business_id>/user/<str:user_id>/history",
        agent_api.HistoryView.as_view(),
        name="agent-history",
    ),
    path(
        "sessions/<str:session_id>/messages",
        agent_api.SessionMessagesView.as_view(),
        name="agent-messages-list",
    ),
    path("sessions/<str:session_id>", agent_api.SessionView.as_view(), name="agent-session"),
]

# The seed writes some paths with a trailing slash and some without; both spellings work.
workspace_urls = [
    re_path(r"^sessions/?$", workspace_api.SessionsView.as_view(), name="workspace-sessions"),
    re_path(r"^sessions/active/?$", workspace_api.ActiveView.as_view(), name="workspace-active"),
    re_path(
        r"^sessions/(?P<session_id>[^/]+)/link-mission/(?P<mission_id>[^/]+)/?$",
        workspace_api.LinkMissionView.as_view(),
        name="workspace-link-mission",
    ),
    re_path(
        r"^sessions/(?P<session_id>[^/]+)/activity/?$",
        workspace_api.ActivityView.as_view(),
        name="workspace-activity",
    ),
    re_path(
        r"^sessions/(?P<session_id>[^/]+)/complete/?$",
        workspace_api.CompleteView.as_view(),
        name="workspace-complete",
    ),
    re_path(
        r"^sessions/(?P<session_id>[^/]+)/?$", workspace_api.SessionView.as_view(), name="workspace-session"
    ),
]

characters_urls = [
    re_path(r"^sessions/?$", characters_api.SessionsView.as_view(), name="characters-sessions"),
    re_path(r"^chat/?$", characters_api.ChatView.as_view(), name="characters-chat"),
]

webhook_urls = [
    re_path(r"^sessions/?$", sessions_webhook.SessionsWebhookView.as_view(), name="sessions-webhook"),
]
