"""Data-health page in the Airflow UI: a FastAPI app (``/data-health``) and a navigation entry (an external view).

On top, the three KPIs against their targets (``binance_extractor.kpis``: completeness 99.95 %, freshness under
5 minutes, job success 99 %; also ``/data-health/api/kpis``). Per table and symbol it shows row count, first and
last key, freshness lag against the schedule, completeness over a chosen window, open and exchange-confirmed holes
and the last extraction runs, plus a close/volume chart (inline SVG: no script, no CDN). Data comes from
``binance_extractor.health`` through the configured store.

Airflow does not authenticate plugin apps (they are mounted, and a mount inherits none of the core API's
dependencies), so every route here requires an Airflow user with access to the plugins view: the UI's JWT
cookie (``_token``, sent by the UI's iframe) or an ``Authorization: Bearer`` token from ``POST /auth/token``.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Annotated, Any

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from binance_extractor import kpis
from binance_extractor.kinds import DataKind, has_candles

log = logging.getLogger(__name__)

URL_PREFIX = "/data-health"
CHART_W, CHART_H, VOL_H = 720, 180, 60


async def airflow_user(request: Request) -> Any:
    """An Airflow user allowed to see plugin views, from the UI's cookie or a Bearer token; else 401/403.

    Airflow's own ``get_user`` does the token checks (imported here, on first request, so processes that only
    load plugins, like the scheduler, do not import the API server's security module).
    """
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import HTTPException
    from fastapi.security import HTTPBearer

    bearer = await HTTPBearer(auto_error=False)(request)
    user = await get_user(request, None, bearer)
    if not get_auth_manager().is_authorized_view(access_view=AccessView.PLUGINS, user=user):
        raise HTTPException(status_code=403, detail="Forbidden")
    return user


def default_tables() -> list[str]:
    from binance_extractor import gaps

    return [*(d.table for d in gaps.default_datasets()), DataKind.TRADES.table()]


def _open_store() -> Any:
    from binance_extractor import reader

    sink, _ = reader.open_store(None)
    return sink


def collect(
    window_days: float,
    tables: Sequence[str] | None = None,
    start: str | None = None,
    end: str | None = None,
    store: Callable[[], Any] = _open_store,
    exact: bool = False,
) -> list[dict[str, Any]]:
    """Health of every (table, symbol) stored; tables with no rows are left out.

    ``exact``: count every symbol's rows whatever the size (slow on very large tables; see health.EXACT_COUNT_LIMIT).
    """
    from binance_extractor import health
    from binance_extractor.timeutil import parse_time

    first = parse_time(start) if start else None
    last = parse_time(end) if end else None
    sink = store()
    try:
        out: list[dict[str, Any]] = []
        for table in tables or default_tables():
            limit = None if exact else health.EXACT_COUNT_LIMIT
            found = health.table_health(sink, table, window_days=window_days, start=first, end=last, exact_limit=limit)
            out.extend(h.to_dict() for h in found)
        return out
    finally:
        sink.close()


def chart(
    table: str, symbol: str, points: int, end: str | None = None, store: Callable[[], Any] = _open_store
) -> list[dict[str, Any]]:
    from binance_extractor import health
    from binance_extractor.timeutil import parse_time

    sink = store()
    try:
        return health.chart_points(sink, table, symbol, points, parse_time(end) if end else None)
    finally:
        sink.close()


# ----------------------------------------------------------------------------------------------- rendering


def _e(value: Any) -> str:
    return html.escape("—" if value is None else str(value))


def _lag(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    if s == 0:
        return "up to date"
    days, rest = divmod(s, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days}d"] if days else []
    parts += [f"{hours}h"] if hours else []
    parts += [f"{minutes}m"] if minutes or not parts else []
    return " ".join(parts) + " behind"


def _rows(r: dict[str, Any]) -> str:
    if r["rows"] is None:
        return "not counted"
    return f"{r['rows']}" if r["rows_exact"] else f"≈ {r['rows']} (key span)"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.2f}%"


def svg_chart(points: list[dict[str, Any]], title: str) -> str:
    """Close as a line over volume bars; pixel positions only are approximated, the labels are exact."""
    if len(points) < 2:
        return f'<p class="muted" id="chart-empty">No candles stored for {_e(title)}.</p>'
    closes = [Decimal(p["close"]) for p in points]
    volumes = [Decimal(p["volume"]) for p in points]
    lo, hi, vmax = min(closes), max(closes), max(volumes) or Decimal(1)
    span = (hi - lo) or Decimal(1)
    n = len(points)

    def x(i: int) -> float:
        return round(i * (CHART_W - 1) / (n - 1), 1)

    line = " ".join(f"{x(i)},{float((hi - c) / span) * (CHART_H - 10) + 5:.1f}" for i, c in enumerate(closes))
    bar_w = max(1.0, CHART_W / n - 1)
    bars = "".join(
        f'<rect x="{x(i):.1f}" y="{CHART_H + VOL_H - float(v / vmax) * VOL_H:.1f}" width="{bar_w:.1f}" '
        f'height="{float(v / vmax) * VOL_H:.1f}"/>'
        for i, v in enumerate(volumes)
    )
    return (
        f'<svg id="chart" role="img" aria-label="close and volume of {_e(title)}" width="{CHART_W}" '
        f'height="{CHART_H + VOL_H + 4}" viewBox="0 0 {CHART_W} {CHART_H + VOL_H + 4}">'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{line}"/>'
        f'<g fill="#9aa5b1">{bars}</g></svg>'
        f'<p class="muted">{_e(title)}: {n} candles {_e(points[0]["t"])} … {_e(points[-1]["t"])}; '
        f"close {_e(lo)} to {_e(hi)}, last {_e(closes[-1])}; max volume {_e(vmax)}</p>"
    )


def _kpi_value(kpi: dict[str, Any]) -> str:
    if kpi["value"] is None:
        return "—"
    return _lag(kpi["value"]) if kpi["unit"] == "seconds" else f"{kpi['value'] * 100:.2f} %"


def _kpi_target(kpi: dict[str, Any]) -> str:
    if kpi["unit"] == "seconds":
        return f"under {kpi['target'] / 60:g} min"
    return f"at least {kpi['target'] * 100:g} %"


def render_kpis(kpis: list[dict[str, Any]]) -> str:
    """The KPI table: each KPI's value against its target, met or missed."""
    cells = []
    for k in kpis:
        state = {True: "met", False: "missed", None: "n/a"}[k["met"]]
        cells.append(
            f'<tr class="kpi {state}" data-kpi="{_e(k["name"])}"><td>{_e(k["name"])}</td>'
            f"<td class='value'>{_e(_kpi_value(k))}</td><td>{_e(_kpi_target(k))}</td>"
            f"<td class='state'>{state}</td><td class='muted'>{_e(k['detail'])}</td></tr>"
        )
    return (
        '<table id="kpis"><thead><tr><th>KPI</th><th>now</th><th>target</th><th></th><th>how</th></tr></thead>'
        f"<tbody>{''.join(cells)}</tbody></table>"
    )


def render_page(
    rows: list[dict[str, Any]],
    window_days: float,
    chart_html: str,
    chart_table: str,
    chart_symbol: str,
    start: str = "",
    end: str = "",
) -> str:
    body = []
    for r in rows:
        holes = "".join(
            f'<li class="hole {_e(h.get("status", "open"))}">{_e(h["start"])} → {_e(h["end"])} '
            f"({_e(h['missing'])} missing)"
            + (f" — not fillable yet: {_e(h.get('reason'))}" if h.get("status") == "not_fillable_yet" else "")
            + "</li>"
            for h in r["open_holes"]
        )
        confirmed = "".join(f"<li>{_e(h['start'])} → {_e(h['end'])}</li>" for h in r["confirmed_holes"])
        runs = "".join(
            f'<li class="run {_e(run["outcome"])}">{_e(run["started_at"])} {_e(run["outcome"])} '
            f"({_e(run['rows_written'])} rows){' — ' + _e(run['error']) if run['error'] else ''}</li>"
            for run in r["runs"]
        )
        fillable = [h for h in r["open_holes"] if h.get("status", "open") == "open"]
        cls = "bad" if fillable else "waiting" if r["open_holes"] else "ok"
        late = " (late)" if r["stale"] else ""
        fresh = f"<td class='{'stale' if r['stale'] else 'fresh'}'>{_e(_lag(r['lag_s']))}{late}</td>"
        expected = "—" if r["expected"] is None else f"{r['stored']} / {r['expected']}"
        body.append(
            f'<tr class="{cls}" data-table="{_e(r["table"])}" data-symbol="{_e(r["symbol"])}">'
            f"<td>{_e(r['table'])}</td><td class='symbol'>{_e(r['symbol'])}</td><td>{_e(_rows(r))}</td>"
            f"<td>{_e(r['first'])}</td><td>{_e(r['last'])}</td>{fresh}"
            f"<td>{_e(expected)}</td><td>{_e(_pct(r['completeness']))}</td>"
            f"<td><span class='count'>{len(r['open_holes'])}</span><ul>{holes}</ul></td>"
            f"<td><span class='count'>{len(r['confirmed_holes'])}</span><ul>{confirmed}</ul></td>"
            f"<td><ul>{runs}</ul></td></tr>"
        )
    empty = "" if rows else '<p id="no-data">No data stored yet.</p>'
    options = sorted({(r["table"], r["symbol"]) for r in rows if has_candles(r["table"])})
    select = "".join(
        f'<option value="{_e(t)}|{_e(s)}"{" selected" if (t, s) == (chart_table, chart_symbol) else ""}>'
        f"{_e(s)} {_e(t)}</option>"
        for t, s in options
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Data health</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1rem;color:#1a202c}} table{{border-collapse:collapse;font-size:13px}}
th,td{{border:1px solid #d0d7de;padding:4px 6px;vertical-align:top;text-align:left}} th{{background:#f3f4f6}}
tr.bad td{{background:#fff5f5}} tr.waiting td{{background:#fffbeb}} li.not_fillable_yet{{color:#92400e}}
ul{{margin:0;padding-left:1rem}} .muted{{color:#6b7280;font-size:12px}}
li.failed{{color:#b91c1c}} td.stale{{color:#b91c1c;font-weight:600}} form{{margin:.5rem 0}}
#kpis{{margin:.5rem 0}} tr.kpi.met td.state{{color:#15803d;font-weight:600}}
tr.kpi.missed td.state{{color:#b91c1c;font-weight:600}}
</style></head><body>
<h1>Data health</h1>
<form method="get" action="">
  <label>Completeness window: last <input name="window" type="number" step="any" min="0.01" value="{window_days:g}">
  days, or from <input name="start" value="{_e(start) if start else ""}" placeholder="2024-01-01">
  to <input name="end" value="{_e(end) if end else ""}" placeholder="2024-02-01"></label>
  <label>Chart <select name="chart">{select}</select></label> <button type="submit">Show</button>
</form>
{render_kpis([k.to_dict() for k in kpis.evaluate(rows)])}
<section id="chart-section">{chart_html}</section>
{empty}
<table id="health"><thead><tr><th>table</th><th>symbol</th><th>rows</th><th>first</th><th>last</th>
<th>freshness</th><th>stored / expected (window)</th><th>completeness</th><th>open holes</th>
<th>exchange-confirmed holes</th><th>last runs</th></tr></thead>
<tbody>{"".join(body)}</tbody></table>
</body></html>"""


# ----------------------------------------------------------------------------------------------- the app


def build_app(auth: Callable[..., Any] | None = None, store: Callable[[], Any] = _open_store) -> FastAPI:
    """The data-health app; ``auth`` is the Airflow access dependency (tests may pass their own store)."""
    from binance_extractor.errors import InputError

    deps = [Depends(auth if auth is not None else airflow_user)]
    app = FastAPI(title="Binance data health", dependencies=deps)

    @app.exception_handler(InputError)
    def bad_input(_request: Any, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.get("/", response_class=HTMLResponse)
    def page(
        window: float = Query(7.0, gt=0, le=366),
        start: str | None = None,
        end: str | None = None,
        chart_sel: str | None = Query(None, alias="chart"),
        exact: bool = False,
    ) -> HTMLResponse:
        rows = collect(window, None, start or None, end or None, store=store, exact=exact)
        if chart_sel and "|" in chart_sel:
            table, symbol = chart_sel.split("|", 1)
        else:
            first = next((r for r in rows if has_candles(r["table"])), None)
            table, symbol = (first["table"], first["symbol"]) if first else ("", "")
        points = chart(table, symbol, 200, end or None, store=store) if table else []
        chart_html = svg_chart(points, f"{symbol} {table}") if table else ""
        return HTMLResponse(render_page(rows, window, chart_html, table, symbol, start or "", end or ""))

    @app.get("/api/health")
    def health_json(
        window: float = Query(7.0, gt=0, le=366),
        table: Annotated[list[str] | None, Query()] = None,
        start: str | None = None,
        end: str | None = None,
        exact: bool = False,
    ) -> Any:
        return collect(window, table, start, end, store=store, exact=exact)

    @app.get("/api/kpis")
    def kpis_json(window: float = Query(7.0, gt=0, le=366), start: str | None = None, end: str | None = None) -> Any:
        """Completeness, freshness and job success against their targets (binance_extractor.kpis)."""
        rows = collect(window, None, start, end, store=store)
        return [k.to_dict() for k in kpis.evaluate(rows)]

    @app.get("/api/chart")
    def chart_json(table: str, symbol: str, points: int = Query(200, ge=2, le=2000), end: str | None = None) -> Any:
        return chart(table, symbol.upper(), points, end, store=store)

    return app


class DataHealthPlugin(AirflowPlugin):
    name = "binance_data_health"
    fastapi_apps = [{"app": build_app(), "url_prefix": URL_PREFIX, "name": "Binance data health"}]
    external_views = [
        {
            "name": "Data health",
            "href": URL_PREFIX.lstrip("/") + "/",
            "destination": "nav",
            "url_route": "data-health",
            "category": "browse",
        }
    ]
