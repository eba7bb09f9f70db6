from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Conversation sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from config.security import log_https_settings, log_twilio_settings
        from sessions_app import checks  # noqa: F401 - checks: registers them
        from sessions_app.delivery import outbound, replies
        from sessions_app.events import message_recorded, session_status_changed, sessions_swept
        from sessions_app.realtime import publish as broadcast

        log_https_settings()
        log_twilio_settings()
        # In this order: a socket sees a message before the reply it causes.
        message_recorded.connect(broadcast.on_message_recorded, dispatch_uid="realtime.broadcast_message")
        session_status_changed.connect(broadcast.on_status_changed, dispatch_uid="realtime.broadcast_status")
        sessions_swept.connect(broadcast.on_sessions_swept, dispatch_uid="realtime.broadcast_sweep")
        message_recorded.connect(replies.on_message_recorded, dispatch_uid="replies.schedule_owed_reply")
        message_recorded.connect(outbound.on_message_recorded, dispatch_uid="outbound.schedule_delivery")
