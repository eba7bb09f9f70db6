"""Reports: today's provisional rollup (RollupDay.provisional) and each day's totals rows (NULL kind or
business: every one), docs/reports.md. Every rolled-up day is marked stale, so the next run of the
rollup task writes its totals; until then the summary computes those days live."""

from typing import Any

from django.db import migrations, models


def mark_every_day_stale(apps: Any, schema_editor: Any) -> None:
    apps.get_model("sessions_app", "RollupDay").objects.update(stale=True)


def drop_totals(apps: Any, schema_editor: Any) -> None:
    rows = apps.get_model("sessions_app", "DailyRollup").objects
    rows.filter(models.Q(channel_kind__isnull=True) | models.Q(business_id__isnull=True)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0023_daily_rollup"),
    ]

    operations = [
        migrations.AddField(
            model_name="rollupday",
            name="provisional",
            field=models.BooleanField(default=False),
        ),
        migrations.RemoveConstraint(
            model_name="dailyrollup",
            name="daily_rollup_day_kind_business",
        ),
        migrations.AlterField(
            model_name="dailyrollup",
            name="business_id",
            field=models.CharField(blank=True, max_length=128, null=True),
        ),
        migrations.AlterField(
            model_name="dailyrollup",
            name="channel_kind",
            field=models.CharField(max_length=16, null=True),
        ),
        migrations.AddConstraint(
            model_name="dailyrollup",
            constraint=models.UniqueConstraint(
                fields=("day", "channel_kind", "business_id"),
                name="daily_rollup_day_kind_business",
                nulls_distinct=False,
            ),
        ),
        migrations.RunPython(mark_every_day_stale, drop_totals),
    ]
