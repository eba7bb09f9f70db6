from django.urls import path

from sessions_app.ui import reports, views

app_name = "sessions_ui"

urlpatterns = [
    path("", views.session_list, name="list"),
    path("updates/", views.session_list_updates, name="list-updates"),
    path("reports/", reports.reports_page, name="reports"),
    path("<uuid:session_id>/", views.session_detail, name="detail"),
    path("<uuid:session_id>/updates/", views.session_detail_updates, name="detail-updates"),
    path("<uuid:session_id>/status/", views.session_transition, name="transition"),
    path("<uuid:session_id>/reply/", views.session_reply, name="reply"),
    path("<uuid:session_id>/merge/", views.session_merge, name="merge"),
    path("<uuid:session_id>/split/", views.session_split, name="split"),
    path("channels/<int:channel_id>/windows/", views.channel_windows, name="channel-windows"),
    path("channels/<int:channel_id>/windows/set/", views.channel_set_window, name="channel-set-window"),
]
