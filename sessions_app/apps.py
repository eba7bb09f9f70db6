from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Conversation sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from config.security import log_https_settings
        from sessions_app import replies  # noqa: F401 - connects the reply scheduler to message_recorded

        log_https_settings()
