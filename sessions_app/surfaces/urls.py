"""The seeds' contracts, each under its own base path (see docs/api-surfaces.md)."""

from django.urls import path

from sessions_app.surfaces import agent_api, characters_api, sessions_webhook, thumbnails, workspace_api

agent_urls = [
    path("messages", agent_api.MessagesView.as_view(), name="agent-messages"),
    path("socket-token", agent_api.SocketTokenView.as_view(), name="agent-socket-token"),
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

# Spelled exactly as each seed writes them (002: a slash after the collection only).
workspace_urls = [
    path("sessions/", workspace_api.SessionsView.as_view(), name="workspace-sessions"),
    path("sessions/active", workspace_api.ActiveView.as_view(), name="workspace-active"),
    path(
        "sessions/<str:session_id>/link-mission/<str:mission_id>",
        workspace_api.LinkMissionView.as_view(),
        name="workspace-link-mission",
    ),
    path(
        "sessions/<str:session_id>/activity", workspace_api.ActivityView.as_view(), name="workspace-activity"
    ),
    path(
        "sessions/<str:session_id>/complete", workspace_api.CompleteView.as_view(), name="workspace-complete"
    ),
    path(
        "sessions/<str:session_id>/messages", workspace_api.MessagesView.as_view(), name="workspace-messages"
    ),
    path("sessions/<str:session_id>", workspace_api.SessionView.as_view(), name="workspace-session"),
]

characters_urls = [
    path("sessions", characters_api.SessionsView.as_view(), name="characters-sessions"),
    path("chat", characters_api.ChatView.as_view(), name="characters-chat"),
]

webhook_urls = [
    path("sessions", sessions_webhook.SessionsWebhookView.as_view(), name="sessions-webhook"),
    path(
        "sessions/<uuid:session_id>/thumbnail.svg",
        thumbnails.thumbnail_view,
        name="sessions-webhook-thumbnail",
    ),
]
