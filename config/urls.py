from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from config.health import healthz, readyz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("webhooks/", include("webhooks.urls")),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("sessions/", include("sessions_app.ui.urls")),
    path("", RedirectView.as_view(url="/sessions/", permanent=False)),
]


# --- REST API and the seeds' surfaces (docs/api.md, docs/api-surfaces.md) ------------------------
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView  # noqa: E402

from sessions_app.surfaces import urls as surfaces  # noqa: E402

urlpatterns += [
    path("api/v1/", include("sessions_app.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("webhook/", include(surfaces.webhook_urls)),
    path("agent/api/", include(surfaces.agent_urls)),
    path("workspace/api/", include(surfaces.workspace_urls)),
    path("characters/api/", include(surfaces.characters_urls)),
]

handler400 = "sessions_app.api.errors.handler400"
handler404 = "sessions_app.api.errors.handler404"
handler500 = "sessions_app.api.errors.handler500"
