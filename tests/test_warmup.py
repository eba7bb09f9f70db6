"""A server process loads its URLs, views and channel layer at start, not in its first request."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.servers import ROOT

PROBE = """
import sys
import {module}
from channels.layers import channel_layers
from django.urls import get_resolver
loaded = ["webhooks.twilio.views", "sessions_app.api.views"]
print(all(name in sys.modules for name in loaded), "default" in channel_layers.backends,
      "url_patterns" in get_resolver().__dict__)
"""


@pytest.mark.parametrize("module", ["config.wsgi", "config.asgi"])
def test_importing_the_application_loads_what_the_first_request_would(module):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "True"]
