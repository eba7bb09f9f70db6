from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Conversation sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from config.security import log_https_settings, log_twilio_settings

        # Registers the system checks, and the Celery tasks in every process (web too), so that a
        # service queueing one by name (delivery/queue.py) finds it.
        from sessions_app import checks, tasks  # noqa: F401

        log_https_settings()
        log_twilio_settings()
