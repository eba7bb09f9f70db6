"""The WSGI application (gunicorn): every request through Django's handler and settings.MIDDLEWARE."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()  # sets Django up before the next import

from config.warmup import warm_up  # noqa: E402

warm_up()
