"""``inspectd web``'s application: read-only pages over the store's database (Starlette + Jinja2).

Pages are rendered on the server; a little JavaScript draws the line strip and the coil map
and keeps the line view live (server-sent events: the server polls the database once a
second and sends what changed). Every database call runs in Starlette's thread pool with a
connection of that thread (``_Connections``).
"""
from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import hmac
import io
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from inspectd.store import read
from inspectd.store.database import Database, connect
from inspectd.store.migrations import require_current
from inspectd.web.grades import DEFAULT_GRADES, Grade, grade

HERE = Path(__file__).resolve().parent

# The NEU classes keep their colours everywhere (map, strip, gallery); others get one by name.
CLASS_COLOURS = {
    "crazing": "#e6194b", "inclusion": "#3cb44b", "patches": "#4363d8", "pitted_surface": "#f58231",
    "rolled-in_scale": "#911eb4", "scratches": "#008080",
}
_SPARE = ["#9a6324", "#808000", "#000075", "#f032e6", "#469990", "#800000", "#aaffc3", "#bfef45"]


def colour(cls: str) -> str:
    if cls in CLASS_COLOURS:
        return CLASS_COLOURS[cls]
    return _SPARE[sum(cls.encode()) % len(_SPARE)]


def script_json(value: Any) -> str:
    """JSON for a <script type="application/json"> block: "<" escaped, so no text ends the block."""
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")


def fmt_time(ns: int | None, seconds: bool = True) -> str:
    if ns is None:
        return "-"
    t = dt.datetime.fromtimestamp(ns / 1e9)
    return t.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def parse_time(text: str | None) -> int | None:
    """A ``datetime-local`` field (local time) as ns since the epoch; None when empty."""
    if not text:
        return None
    try:
        return int(dt.datetime.fromisoformat(text).timestamp() * 1e9)
    except ValueError:
        return None


class _Connections:
    """One read-only connection per thread (SQLite connections are not shared across threads)."""

    def __init__(self, url: str):
        self.url = url
        self._local = threading.local()
        self._all: list[Database] = []
        self._lock = threading.Lock()

    def get(self) -> Database:
        db = getattr(self._local, "db", None)
        if db is None:
            db = connect(self.url, read_only=True)
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                try:
                    db.close()
                except Exception:  # noqa: BLE001 - closing at exit; nothing to do about it
                    pass
            self._all.clear()


class TokenGate:
    """ASGI middleware: every request needs the token (``Authorization: Bearer T``, ``?token=T``,
    or the cookie a request with ``?token=`` sets, so that the page's own links and images work)."""

    COOKIE = "inspectd_token"

    def __init__(self, app: Any, token: str):
        self.app = app
        self.token = token.encode()

    def _ok(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.token)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        auth = headers.get("authorization", "")
        bearer = auth[7:] if auth.lower().startswith("bearer ") else None
        cookies = dict(part.strip().split("=", 1) for part in headers.get("cookie", "").split(";") if "=" in part)
        from_query = (query.get("token") or [None])[0]
        if not (self._ok(bearer) or self._ok(headers.get("x-inspectd-token")) or self._ok(from_query)
                or self._ok(cookies.get(self.COOKIE))):
            resp = PlainTextResponse("401: a token is required (Authorization: Bearer TOKEN, or ?token=TOKEN)",
                                     status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await resp(scope, receive, send)
            return
        if not self._ok(from_query):
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: dict) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(
                    b"set-cookie", f"{self.COOKIE}={self.token.decode()}; Path=/; HttpOnly; SameSite=Strict".encode())]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def build_app(url: str, *, token: str | None = None, grades: tuple[Grade, ...] = DEFAULT_GRADES,
              poll_s: float = 1.0) -> Any:
    """The ASGI application for ``--db url`` (checked now: a bad database fails before serving)."""
    first = connect(url, read_only=True)
    try:
        require_current(first)
    finally:
        first.close()
    conns = _Connections(url)
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.filters["t"] = fmt_time
    env.filters["colour"] = colour
    env.filters["q"] = lambda text: quote(str(text), safe="/")
    env.globals["colours"] = CLASS_COLOURS

    def render(name: str, request: Request, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(request=request, path=request.url.path, **ctx))

    async def db_call(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return await run_in_threadpool(lambda: fn(conns.get(), *args, **kw))

    async def home(request: Request) -> Response:
        return RedirectResponse("/line", status_code=302)

    async def line(request: Request) -> Response:
        snapshot = await db_call(read.line_now)
        return render("line.html", request, snapshot=script_json(snapshot), cameras=snapshot["cameras"])

    async def line_json(request: Request) -> Response:
        return JSONResponse(await db_call(read.line_now))

    async def line_stream(request: Request) -> Response:
        async def events():
            last = None
            while True:
                if await request.is_disconnected():
                    return
                snapshot = await db_call(read.line_now)
                body = json.dumps(snapshot)
                key = json.dumps(snapshot["cameras"])     # unchanged data: a comment keeps it open
                yield f"data: {body}\n\n" if key != last else ": idle\n\n"
                last = key
                await asyncio.sleep(poll_s)
        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    def graded(s: dict[str, Any]) -> dict[str, Any]:
        g, why = grade(s, grades)
        return {**s, "grade": g, "grade_why": why}

    async def coils(request: Request) -> Response:
        rows = [graded(s) for s in await db_call(read.coils, 200)]
        classes = sorted({c for s in rows for c in s["counts"]})
        return render("coils.html", request, coils=rows, classes=classes)

    async def _coil_or_404(request: Request) -> str | None:
        coil = request.path_params["coil"]
        return coil if await db_call(read.coil_exists, coil) else None

    async def coil_map(request: Request) -> Response:
        coil = await _coil_or_404(request)
        if coil is None:
            return PlainTextResponse("404: no such coil", status_code=404)
        data = await db_call(read.coil_map, coil)
        data["summary"] = graded(data["summary"])
        data["colours"] = {c: colour(c) for c in data["names"]}
        return render("map.html", request, coil=coil, summary=data["summary"], data=script_json(data))

    async def coil_report(request: Request) -> Response:
        coil = await _coil_or_404(request)
        if coil is None:
            return PlainTextResponse("404: no such coil", status_code=404)
        summary = graded(await db_call(read.coil_summary, coil))
        data = await db_call(read.coil_map, coil)
        names = data["names"]
        top = [[r[0], names[r[1]], names[r[2]], *r[3:10], names[r[10]], *r[11:]]
               for r in sorted(data["defects"], key=lambda r: -(r[3] or 0))[:200]]
        return render("report.html", request, coil=coil, s=summary, top=top, fields=read.DEFECT_FIELDS,
                      uninspected=data["uninspected"], alarms=data["alarms"], grades=grades)

    async def coil_csv(request: Request) -> Response:
        coil = await _coil_or_404(request)
        if coil is None:
            return PlainTextResponse("404: no such coil", status_code=404)
        rows = await db_call(read.coil_defects, coil)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["defect_id", "camera", "frame", "position_m", "position_end_m", "x1_mm", "x2_mm", "class",
                    "score", "area_mm2", "branch", "rejects", "verdict_status", "capture_time"])
        digits = (None, None, None, 4, 4, 1, 1, None, 4, 2, None, None, None)
        for r in rows:
            w.writerow([v if d is None or v is None else round(v, d) for v, d in zip(r[:13], digits)]
                       + [fmt_time(r[13])])
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in coil)
        return Response(buf.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="coil-{safe}.csv"'})

    async def defect_json(request: Request) -> Response:
        d = await db_call(read.defect, request.path_params["id"])
        if d is None:
            return JSONResponse({"error": "no such defect"}, status_code=404)
        d["capture_time"] = fmt_time(d["capture_wall_ns"])
        return JSONResponse(d)

    async def crop(request: Request) -> Response:
        jpeg = await db_call(read.crop, request.path_params["id"])
        if jpeg is None:
            return PlainTextResponse("404: no crop for this defect", status_code=404)
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})

    async def gallery(request: Request) -> Response:
        q = request.query_params
        try:
            min_score = float(q["min_score"]) if q.get("min_score") else None
            before = int(q["before"]) if q.get("before") else None
        except ValueError:
            return PlainTextResponse("400: min_score and before must be numbers", status_code=400)
        items = await db_call(read.gallery, cls=q.get("class") or None, min_score=min_score,
                              coil=q.get("coil") or None, since_ns=parse_time(q.get("since")),
                              until_ns=parse_time(q.get("until")), before_id=before, limit=60)
        classes = await db_call(read.classes)
        more = dict(q)
        more.pop("token", None)
        if items:
            more["before"] = str(items[-1]["id"])
        return render("gallery.html", request, items=items, classes=classes, q=q,
                      next_query="&".join(f"{k}={v}" for k, v in more.items()) if len(items) == 60 else None)

    routes = [
        Route("/", home),
        Route("/line", line),
        Route("/line.json", line_json),
        Route("/line/stream", line_stream),
        Route("/coils", coils),
        Route("/coil/map/{coil:path}", coil_map),
        Route("/coil/report/{coil:path}", coil_report),
        Route("/coil/csv/{coil:path}", coil_csv),
        Route("/defects/{id:int}", defect_json),
        Route("/crops/{id:int}", crop),
        Route("/gallery", gallery),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        conns.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    return TokenGate(app, token) if token else app
