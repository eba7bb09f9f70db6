"""p95 of the first page of every session list filter, on the table the sweep benchmark leaves behind.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_sweep .venv/bin/python bench/sweep.py
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_sweep .venv/bin/python bench/status_lists.py

After the sweep that table holds 1,000,000 SMS sessions: ~500,000 abandoned (two hours quiet) under
~500,000 newer active ones, plus those ingest opened while the sweep ran. That is the shape a status
filter can stumble on (an index walk past every newer session of another status).

Each list is read through the product's own code, as its view builds it, first page only:

- `api`: `SessionViewSet` (`/api/v1/sessions/`) as a staff user: its `get_queryset` (contacts
  joined), the `SessionFilter` FilterSet and the ordering filter, then its `paginate_queryset`
  (the several-status merge of `search/statuses.py`, and the cursor page of 50, fetched as 51 rows).
  The "view" column is the whole view, serializer included (no middleware).
- `ui`: the staff sessions page's list, `ui.queries.sessions_page(ListFilters.from_query(…))`: the
  page of 50 (51 rows read), contacts joined, with the merge for several statuses.
- `admin`: Django admin's `ChangeList` for the Session admin, as its changelist view makes it from a
  request by a superuser: every link its list filters offer (each computed by the filter itself),
  the date hierarchy's, the search box, and `status__in=` (the comma-separated form admin accepts
  in a URL), then what `ChangeList` reads for a page: the filtered count and the page of 100 rows,
  contact and channel joined. "admin page" rows are the whole changelist response through the test
  client (templates, the date hierarchy's own queries), for scale.

The planner's statistics first: this machine's PostgreSQL runs with autovacuum off, so after the
sweep they still say every session is active, and plans chosen on them walk the wrong index (a
"rare" abandoned status). By default the session, contact and StatusChange tables are analyzed
first, as autovacuum's analyze would within a minute of a sweep that moved 10 % of the table;
`--statistics as-left` measures the plans as the sweep left them.

Every case is timed in `--rounds` rounds (the cases interleaved, so a slow moment of a shared machine
hits them alike), `--runs` timed reads each after one warm-up; the table gives each case's p95 per
round, their median and spread. Target: median p95 <= 50 ms for every list read (the "view" and
"admin page" columns are shown, not judged). Exit status 1 when one misses; `--explain` prints
`EXPLAIN (ANALYZE, BUFFERS)` of the slowest statement of each case that missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from benchenv import BENCH_FIELD_KEY

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
TARGET_MS = 50.0
BUDGET_SECONDS = 8.0  # a case's timed reads stop after this long in a round (at least MIN_RUNS)
MIN_RUNS = 5


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


@dataclass
class Case:
    surface: str
    name: str
    read: Callable[[], int]  # reads the first page; returns how many rows it holds
    whole: Callable[[], object] | None = None  # the whole view, for the "view" column
    judged: bool = True
    rows: int = 0
    queries: int = 0
    slowest_sql: str = ""
    p95s: list[float] = field(default_factory=list)
    whole_p95s: list[float] = field(default_factory=list)


def timed(read: Callable[[], object], runs: int) -> list[float]:
    read()  # warm
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < runs and (len(samples) < MIN_RUNS or time.perf_counter() - started < BUDGET_SECONDS):
        start = time.perf_counter()
        read()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def setup() -> None:
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("set DATABASE_URL to the database bench/sweep.py used")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    os.environ.setdefault("FIELD_ENCRYPTION_KEYS", BENCH_FIELD_KEY)
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ.pop("REDIS_URL", None)
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="bench-lists-")  # static files for admin pages
    import django
    from django.core.management import call_command

    django.setup()
    call_command("collectstatic", "--noinput", verbosity=0)  # DEBUG off: the manifest storage needs it


def api_cases(staff: Any, phone: str, contact_id: int) -> list[Case]:
    from django.db.models import Max, Min
    from rest_framework.test import APIRequestFactory, force_authenticate

    from sessions_app.api.views import SessionViewSet
    from sessions_app.models import Session

    factory = APIRequestFactory()
    list_view = SessionViewSet.as_view({"get": "list"})

    def request(query: str) -> Any:
        django_request = factory.get(f"/api/v1/sessions/?{query}")
        force_authenticate(django_request, user=staff)
        return django_request

    def rows(query: str) -> int:
        # What the list action does before it serializes: the view's queryset, its filters, its page.
        view = SessionViewSet(action_map={"get": "list"})
        view.setup(request(query))
        view.action, view.format_kwarg = "list", None
        view.request = view.initialize_request(view.request)
        view.initial(view.request)
        page = view.paginate_queryset(view.filter_queryset(view.get_queryset()))
        return len(list(page))

    def whole(query: str) -> None:
        response = list_view(request(query))
        response.render()
        if response.status_code != 200:
            raise SystemExit(f"api ?{query}: HTTP {response.status_code} {response.content[:200]!r}")

    # Halfway between the oldest and the newest session: on the swept table, between the abandoned
    # half (quiet for two hours when generated) and the active one, whenever this runs.
    span = Session.objects.aggregate(first=Min("created_at"), last=Max("created_at"))
    split = (
        (span["first"] + (span["last"] - span["first"]) / 2).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    statuses = ["active", "abandoned", "closed", "resolved", "completed", "archived"]
    queries: dict[str, str] = {"no filter": ""}
    queries |= {f"status={s}": f"status={s}" for s in statuses}
    queries |= {
        "status=abandoned&status=closed": "status=abandoned&status=closed",
        "status=active&status=abandoned": "status=active&status=abandoned",
        "status=closed&status=archived": "status=closed&status=archived",
        "status= every one of the six": "&".join(f"status={s}" for s in statuses),
        "channel=sms": "channel=sms",
        "channel=whatsapp": "channel=whatsapp",
        "channel=sms&channel=whatsapp": "channel=sms&channel=whatsapp",
        "channel=sms&status=abandoned": "channel=sms&status=abandoned",
        "channel=sms&status=abandoned&status=closed": "channel=sms&status=abandoned&status=closed",
        "contact_phone": urlencode({"contact_phone": phone}),
        "contact": f"contact={contact_id}",
        "contact&status=abandoned": f"contact={contact_id}&status=abandoned",
        "business_id": "business_id=B0042",
        "business_id&status=abandoned": "business_id=B0042&status=abandoned",
        "location_id": "location_id=L0042",
        "owner": f"owner={staff.pk}",
        "agent_id": "agent_id=agent_7",
        "created_after (halfway)": f"created_after={split}",
        "created_before (halfway)": f"created_before={split}",
        "created_before&ordering=-created_at": f"created_before={split}&ordering=-created_at",
        "last_activity_after (halfway)": f"last_activity_after={split}",
        "last_activity_before (halfway)": f"last_activity_before={split}",
        "last_activity_before&status=abandoned": f"last_activity_before={split}&status=abandoned",
        "q=sms (every session)": "q=sms",
        "q=phone": urlencode({"q": phone}),
        "q=rare word": "q=zzyzx",
        "q=bench (messages ingested)": "q=bench",
        "q=sms&status=abandoned": "q=sms&status=abandoned",
        "ordering=-created_at": "ordering=-created_at",
        "ordering=-message_count": "ordering=-message_count",
        "ordering=last_activity_at": "ordering=last_activity_at",
        "ordering=-created_at&status=abandoned": "ordering=-created_at&status=abandoned",
    }
    return [
        Case("api", name, lambda q=query: rows(q), whole=lambda q=query: whole(q))
        for name, query in queries.items()
    ]


def ui_cases(phone: str) -> list[Case]:
    from django.http import QueryDict
    from django.utils import timezone

    from sessions_app.ui import queries

    def rows(query: str) -> int:
        return len(queries.sessions_page(queries.ListFilters.from_query(QueryDict(query))).sessions)

    today = timezone.localdate()
    yesterday = today - timedelta(days=1)
    statuses = ["active", "abandoned", "closed", "resolved", "completed", "archived"]
    cases: dict[str, str] = {"no filter": ""}
    cases |= {f"tab {tab.key}": f"channel={tab.key}" for tab in queries.TABS if tab.key}
    cases |= {f"status={s}": f"status={s}" for s in statuses}
    cases |= {
        "status=abandoned+closed": "status=abandoned&status=closed",
        "status=active+abandoned": "status=active&status=abandoned",
        "status= every one of the six": "&".join(f"status={s}" for s in statuses),
        "tab sms&status=abandoned": "channel=sms&status=abandoned",
        "tab whatsapp&status=abandoned": "channel=whatsapp&status=abandoned",
        "tab sms&status=abandoned+closed": "channel=sms&status=abandoned&status=closed",
        "q=sms (every session)": "q=sms",
        "q=phone": urlencode({"q": phone}),
        "q=rare word": "q=zzyzx",
        "q=sms&status=abandoned": "q=sms&status=abandoned",
        f"from={today}": f"from={today}",
        f"to={yesterday}": f"to={yesterday}",
        f"from={yesterday}&to={today}": f"from={yesterday}&to={today}",
        f"from={today}&status=abandoned": f"from={today}&status=abandoned",
        "business": "business=B0042",
        "sort=created": "sort=created",
        "sort=created&status=abandoned": "sort=created&status=abandoned",
        "sort=created&status=abandoned+closed": "sort=created&status=abandoned&status=closed",
    }
    return [Case("ui", name, lambda q=query: rows(q)) for name, query in cases.items()]


def admin_cases(superuser: Any) -> list[Case]:
    from django.contrib import admin
    from django.test import Client, RequestFactory

    from sessions_app.models import Session

    model_admin = admin.site._registry[Session]
    factory = RequestFactory()
    path = "/admin/sessions_app/session/"

    def changelist(query: str) -> Any:
        request = factory.get(f"{path}?{query}")
        request.user = superuser
        return model_admin.get_changelist_instance(request)

    def rows(query: str) -> int:
        # ChangeList's own reads for a page: it counts the filtered rows, then the page is read.
        return len(list(changelist(query).result_list))

    # Every link the list filters offer, as each filter computes it (the date filters' bounds too).
    links: dict[str, str] = {"no filter": ""}
    base = changelist("")
    for spec in base.filter_specs:
        for choice in spec.choices(base):
            query = choice["query_string"].lstrip("?")
            if query:
                links[f"{spec.title}: {choice['display']}"] = query
    if model_admin.date_hierarchy:
        latest = Session.objects.order_by("-last_activity_at").values_list("last_activity_at", flat=True)
        newest = latest.first()
        if newest is not None:
            day = newest.astimezone()
            links["date hierarchy: year"] = f"last_activity_at__year={day.year}"
            links["date hierarchy: month"] = (
                f"last_activity_at__year={day.year}&last_activity_at__month={day.month}"
            )
            links["date hierarchy: day"] = (
                f"last_activity_at__year={day.year}&last_activity_at__month={day.month}"
                f"&last_activity_at__day={day.day}"
            )
    if model_admin.lookup_allowed("status__in", "abandoned,closed", None):
        links["status__in=abandoned,closed"] = "status__in=abandoned,closed"
        links["status__in=active,abandoned"] = "status__in=active,abandoned"
    links |= {
        "search q=sms": "q=sms",
        "search q=rare word": "q=zzyzx",
        "status=abandoned&search q=sms": "status__exact=abandoned&q=sms",
        "kind sms&status=abandoned": "channel_kind__exact=sms&status__exact=abandoned",
    }
    cases = [Case("admin", name, lambda q=query: rows(q)) for name, query in links.items()]

    client = Client()
    client.force_login(superuser)

    def page(query: str) -> None:
        response = client.get(f"{path}?{query}")
        if response.status_code != 200:
            raise SystemExit(f"admin ?{query}: HTTP {response.status_code}")

    for name, query in {
        "no filter": "",
        "status: Abandoned": "status__exact=abandoned",
    }.items():
        cases.append(Case("admin page", name, lambda q=query: page(q) or 0, judged=False))
    return cases


def cap_admin_count(cap: int) -> None:
    """A trial of a paginator for the Session admin that counts at most `cap` + 1 rows (docs/sweep.md)."""
    from functools import cached_property

    from django.contrib import admin
    from django.core.paginator import Paginator

    from sessions_app.models import Session

    class CappedCount(Paginator):
        @cached_property
        def count(self) -> int:
            return self.object_list.order_by().values("pk")[: cap + 1].count()

    admin.site._registry[Session].paginator = CappedCount


def describe(case: Case) -> None:
    """Rows and statements of one read, and the slowest statement's SQL (for --explain)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        case.rows = case.read()
    case.queries = len(captured.captured_queries)
    if captured.captured_queries:
        case.slowest_sql = max(captured.captured_queries, key=lambda q: float(q["time"]))["sql"]


def explain(sql: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())


def check_merge() -> None:
    """The merged page of two statuses holds the rows of the plain `IN` query, in its order."""
    from sessions_app.models import Session
    from sessions_app.search.statuses import SeveralStatuses, in_statuses

    ended = ["abandoned", "closed"]
    order = ("-last_activity_at", "-id")
    plain = list(Session.objects.filter(status__in=ended).select_related("contact").order_by(*order)[:51])
    merged = SeveralStatuses(in_statuses(Session.objects.select_related("contact"), ended), ended)
    if not plain or [s.pk for s in plain] != [s.pk for s in merged.order_by(*order)[:51]]:
        sys.exit("the merged page differs from the plain one (or is empty: run bench/sweep.py first)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20, help="timed reads per case and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--explain", action="store_true", help="EXPLAIN ANALYZE the slowest statement of a miss"
    )
    parser.add_argument(
        "--only", action="append", default=[], help="only the cases whose surface and name contain this"
    )
    parser.add_argument(
        "--capped-admin-count",
        type=int,
        default=0,
        metavar="N",
        help="a trial, not the product: admin's paginator counts at most N + 1 rows",
    )
    parser.add_argument(
        "--statistics",
        choices=["analyze", "as-left"],
        default="analyze",
        help="ANALYZE the tables first (default), or keep the statistics the sweep left",
    )
    args = parser.parse_args()
    setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.models import Count

    from sessions_app.models import Contact, Session

    if args.statistics == "analyze":
        with connection.cursor() as cursor:
            for table in ("sessions_app_session", "sessions_app_contact", "sessions_app_statuschange"):
                cursor.execute(f"ANALYZE {table}")

    check_merge()
    counts = dict(Session.objects.order_by().values_list("status").annotate(n=Count("pk")))
    print(
        f"{sum(counts.values()):,} sessions: "
        + ", ".join(f"{n:,} {s}" for s, n in sorted(counts.items()))
        + f"; statistics: {args.statistics}"
    )
    user_model = get_user_model()
    superuser = user_model.objects.filter(
        username="bench-lists"
    ).first() or user_model.objects.create_superuser("bench-lists", "bench@example.invalid", None)
    contact = Contact.objects.order_by("id")[100]
    if args.capped_admin_count:
        cap_admin_count(args.capped_admin_count)
        print(f"trial: admin's paginator counts at most {args.capped_admin_count + 1:,} rows")
    cases = api_cases(superuser, contact.phone, contact.pk) + ui_cases(contact.phone) + admin_cases(superuser)
    if args.only:
        cases = [c for c in cases if any(part in f"{c.surface} {c.name}" for part in args.only)]
    for case in cases:
        describe(case)
    try:
        for _ in range(args.rounds):
            for case in cases:
                case.p95s.append(p95(timed(case.read, args.runs)))
                if case.whole is not None:
                    case.whole_p95s.append(p95(timed(case.whole, args.runs)))
    finally:
        connection.close()

    print(
        f"\nfirst page of each list; p95 in ms per round ({args.rounds} rounds, "
        f"up to {args.runs} reads each), "
        f"median of the rounds, spread; target {TARGET_MS:.0f} ms"
    )
    print(
        f"{'surface':10} {'list':48} {'rows':>4} {'SQL':>3} {'p95 per round':>22} {'median':>8} {'view':>7}"
    )
    missed = []
    for case in cases:
        median = statistics.median(case.p95s)
        rounds = " ".join(f"{v:6.1f}" for v in case.p95s)
        view = f"{statistics.median(case.whole_p95s):7.1f}" if case.whole_p95s else " " * 7
        miss = case.judged and median > TARGET_MS
        mark = "  MISSED" if miss else ("" if case.judged else "  (not judged)")
        print(
            f"{case.surface:10} {case.name[:48]:48} {case.rows:>4} {case.queries:>3} {rounds:>22} "
            f"{median:8.1f} {view}{mark}"
        )
        if miss:
            missed.append(case)
    print(f"\n{len(missed)} of {sum(c.judged for c in cases)} lists over {TARGET_MS:.0f} ms (median p95)")
    if args.explain:
        for case in missed:
            print(
                f"\n--- {case.surface} {case.name}: the slowest statement\n{case.slowest_sql}\n"
                + explain(case.slowest_sql)
            )
        connection.close()
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
