"""The FastAPI application: REST API under ``/api/v1``, pages, server-sent events.

Auth: every path but ``/healthz``, ``/login`` and ``/logout`` needs an API token, as
``Authorization: Bearer TOKEN`` or the ``iv_token`` cookie the login page sets (HttpOnly,
SameSite=Strict).  Missing or unknown token: 401 (pages redirect to /login); a viewer asking
for an operator's action: 403.
"""
from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from console import data
from console.auth import COOKIE, identify
from industriverse.errors import BadInput
from industriverse.fleet import store

HERE = Path(__file__).resolve().parent
EVENT_POLL_S = 1.0


@dataclass
class ConsoleConfig:
    """How the console runs strikes and what it lists."""

    broker: str | None = None
    prefix: str | None = None
    runs_dir: Path = Path("runs")
    contracts_file: Path | None = None
    runner: Any = field(default=None, repr=False)  # built from broker/runs_dir when None


class StrikeSubmission(BaseModel):
    """A strike request: the same inputs as ``industriverse strike``."""

    domain: str = Field(min_length=1, description="shipped domain: hvac, hvac_two_zone, cold_storage, microgrid")
    constraint: dict[str, Any] = Field(description="the client constraint JSON (see examples/)")
    method: Literal["auto", "idf", "lp"] = Field("auto", description="optimizer method")
    seed: int | None = Field(None, description="seed of the optimizer and the ensemble (default: the constraint's uncertainty.seed)")
    backoff_factor: float = Field(1.0, ge=0, description="envelope back-off in multiples of the noise back-off")


class StrikeAccepted(BaseModel):
    strike_id: str
    status: str
    bus: str
    links: dict[str, str]


class RollbackRequest(BaseModel):
    reason: str | None = Field(None, description="why (default: who rolled back, from the console)")


class Unauthenticated(Exception):
    """A page asked for without a token: redirect to /login."""


bearer = HTTPBearer(auto_error=False, description="an API token from 'industriverse token create'")


def _token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is not None:
        return credentials.credentials
    return request.cookies.get(COOKIE)


def api_user(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> dict:
    """The caller of an API route (viewer or operator); 401 without a valid token."""
    user = identify(_token(request, credentials))
    if user is None:
        raise HTTPException(401, "missing or unknown API token", headers={"WWW-Authenticate": "Bearer"})
    return user


def api_operator(user: dict = Depends(api_user)) -> dict:
    """An operator; 403 for a viewer."""
    if user["role"] != "operator":
        raise HTTPException(403, f"token '{user['name']}' is a viewer; this needs an operator token")
    return user


def page_user(request: Request) -> dict:
    user = identify(request.cookies.get(COOKIE) or _bearer_header(request))
    if user is None:
        raise Unauthenticated()
    return user


def _bearer_header(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:] if auth.lower().startswith("bearer ") else None


def bad_input_response(exc: BadInput) -> JSONResponse:
    """422 naming the field the way the CLI does (``error: request: field 'F': what is wrong``)."""
    fld = exc.field or ""
    loc = ["body", fld[2:]] if fld.startswith("--") else ["body", "constraint", *[p for p in fld.split(".") if p]]
    return JSONResponse(status_code=422, content={
        "detail": [{"loc": loc, "msg": exc.problem, "type": "value_error", "field": fld}],
        "error": f"error: {exc}",
    })


def create_app(config: ConsoleConfig | None = None) -> FastAPI:
    """The console application over the default store (INDUSTRIVERSE_DB_URL or the SQLite file)."""
    config = config or ConsoleConfig()
    if config.runner is None:
        from console.runner import EmbeddedRunner, RabbitRunner

        config.runner = RabbitRunner(config.broker, config.prefix) if config.broker else EmbeddedRunner(config.runs_dir)
    runner = config.runner
    store.get_engine()  # create the schema (and fail early if the store is unreachable)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        runner.close()

    app = FastAPI(lifespan=lifespan, title="Industriverse console API", version="1",
                  description="Submit strikes, read their outcome, reports and proofs; list capsules, activities, "
                              "alerts and contracts; roll back a deployment. Auth: `Authorization: Bearer TOKEN`.",
                  docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["seconds"] = lambda s: "" if s is None else (f"{s:.2f} s" if s < 60 else f"{s / 60:.1f} min")
    templates.env.filters["when"] = lambda t: (t or "")[:19].replace("T", " ")
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def _static_needs_a_token(request: Request, call_next):
        # mounted files bypass the routes' dependencies: check them here (nothing is anonymous but /healthz)
        if request.url.path.startswith("/static/"):
            token = request.cookies.get(COOKIE) or _bearer_header(request)
            if await run_in_threadpool(identify, token) is None:
                return JSONResponse({"detail": "missing or unknown API token"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    def contracts() -> list[dict]:
        if config.contracts_file is None:
            return []
        from industriverse.fleet.contracts import load_contracts

        items, _ = load_contracts(config.contracts_file)
        return [{"id": c.id, "client": c.client, "domain": c.domain, "active": c.active} for c in items]

    @app.exception_handler(Unauthenticated)
    async def _to_login(request: Request, _exc: Unauthenticated):
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.exception_handler(BadInput)
    async def _bad_input(_request: Request, exc: BadInput):
        return bad_input_response(exc)

    # --- open ------------------------------------------------------------------------------
    @app.get("/healthz", include_in_schema=False)
    def healthz():
        store.get_engine()
        return {"status": "ok", "bus": runner.bus}

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, next: str = "/", error: str | None = None):
        return templates.TemplateResponse(request, "login.html", {"next": next, "error": error, "user": None})

    @app.post("/login", include_in_schema=False)
    def login(request: Request, token: str = Form(...), next: str = Form("/")):
        if identify(token) is None:
            return templates.TemplateResponse(request, "login.html", {"next": next, "error": "unknown token", "user": None},
                                              status_code=401)
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict")
        return response

    @app.get("/logout", include_in_schema=False)
    def logout():
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    # --- OpenAPI, behind auth --------------------------------------------------------------
    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_user: dict = Depends(api_user)):
        return app.openapi()

    @app.get("/docs", include_in_schema=False)
    def docs(_user: dict = Depends(page_user)):
        # Swagger UI vendored from the npm package swagger-ui-dist: no CDN, works offline
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Industriverse console API",
                                   swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger/swagger-ui.css", swagger_favicon_url="data:,")

    # --- API: strikes ----------------------------------------------------------------------
    @app.post("/api/v1/strikes", status_code=202, response_model=StrikeAccepted, tags=["strikes"],
              responses={401: {"description": "missing or unknown token"}, 403: {"description": "not an operator"},
                         422: {"description": "bad body; the field is named"}})
    def submit_strike(body: StrikeSubmission, _user: dict = Depends(api_operator)):
        """Validate the constraint, record the strike and publish ``strike.requested`` on the bus."""
        from industriverse.model.constraint import absolute_csv_paths
        from industriverse.model.mapping import map_constraint
        from messages import Message, StrikeRequested

        problem = map_constraint(body.domain, body.constraint, file="request")  # BadInput -> 422
        request = absolute_csv_paths(body.constraint, Path.cwd())
        seed = body.seed if body.seed is not None else problem.constraint.uncertainty.seed
        message = Message.start(StrikeRequested(domain=body.domain, constraint=request, method=body.method, seed=seed,
                                                backoff_k=body.backoff_factor), contract_id=request.get("contract_id"))
        run_dir = (config.runs_dir / message.strike_id).resolve() if runner.bus == "embedded" else None
        store.record_strike(message.strike_id, contract_id=message.contract_id, domain=body.domain, status="requested",
                            run_dir=str(run_dir) if run_dir else None)
        runner.submit(message, request)
        sid = message.strike_id
        return StrikeAccepted(strike_id=sid, status="requested", bus=runner.bus,
                              links={"self": f"/api/v1/strikes/{sid}", "page": f"/strikes/{sid}"})

    @app.get("/api/v1/strikes", tags=["strikes"])
    def list_strikes(contract_id: str | None = None, limit: int = 100, _user: dict = Depends(api_user)):
        """The latest strikes, newest first (status and reason)."""
        return store.list_strikes(contract_id, limit=max(1, min(limit, 1000)))

    def _strike_or_404(strike_id: str) -> dict:
        view = data.strike_view(strike_id)
        if view is None:
            raise HTTPException(404, f"no strike {strike_id}")
        return view

    @app.get("/api/v1/strikes/{strike_id}", tags=["strikes"])
    def get_strike(strike_id: str, _user: dict = Depends(api_user)):
        """Status, stage timeline with durations (s), outcome, reasons, value summary, report files."""
        return _strike_or_404(strike_id)

    @app.get("/api/v1/strikes/{strike_id}/documents/{name}", tags=["strikes"])
    def get_document(strike_id: str, name: Literal["request", "optimization", "simulation", "verdict", "proof"],
                     _user: dict = Depends(api_user)):
        """One of the run's JSON documents."""
        _strike_or_404(strike_id)
        doc = data.document(strike_id, name)
        if doc is None:
            raise HTTPException(404, f"strike {strike_id} has no {name} yet")
        return doc

    @app.get("/api/v1/strikes/{strike_id}/report/{path:path}", tags=["strikes"])
    def get_report_file(strike_id: str, path: str, _user: dict = Depends(api_user)):
        """A file of the value report: report.html, report.pdf, report.md, value.json, the plots."""
        found = data.report_file(strike_id, path)
        if found is None:
            raise HTTPException(404, f"strike {strike_id} has no report file {path}")
        body, media = found
        return Response(body, media_type=media)

    # --- API: gateway ----------------------------------------------------------------------
    def gateway():
        from industriverse.operate.gateway import CapsuleGatewayService

        return CapsuleGatewayService()

    @app.get("/api/v1/capsules", tags=["gateway"])
    def list_capsules(_user: dict = Depends(api_user)):
        """Every capsule with its active version and active deployment activity."""
        return gateway().list_capsules()

    def _capsule_or_404(capsule_id: str) -> dict:
        g = gateway()
        row = next((c for c in g.list_capsules() if c["capsule_id"] == capsule_id), None)
        if row is None:
            raise HTTPException(404, f"no capsule {capsule_id}")
        return {**row, "versions": g.list_versions(capsule_id), "activities": g.list_activities(capsule_id)}

    @app.get("/api/v1/capsules/{capsule_id}", tags=["gateway"])
    def get_capsule(capsule_id: str, _user: dict = Depends(api_user)):
        """One capsule with its versions and activities."""
        return _capsule_or_404(capsule_id)

    @app.get("/api/v1/activities", tags=["gateway"])
    def list_activities(capsule_id: str | None = None,
                        type: Literal["deployment", "supersede", "rollback", "alert"] | None = None,
                        _user: dict = Depends(api_user)):
        """Deployments, supersedes, rollbacks and alerts, oldest first."""
        return gateway().list_activities(capsule_id, activity_type=type)

    def _activity_or_404(activity_id: str) -> dict:
        row = gateway().get_activity(activity_id)
        if row is None:
            raise HTTPException(404, f"no activity {activity_id}")
        return row

    @app.get("/api/v1/activities/{activity_id}", tags=["gateway"])
    def get_activity(activity_id: str, _user: dict = Depends(api_user)):
        return _activity_or_404(activity_id)

    def rollback(activity_id: str, reason: str | None, user: dict) -> dict:
        act = _activity_or_404(activity_id)
        if act["activity_type"] != "deployment" or act["status"] != "active":
            raise HTTPException(409, f"activity {activity_id} is a {act['activity_type']} in state {act['status']}: "
                                     "only the active deployment of a capsule can be rolled back")
        rid = gateway().rollback(act["capsule_id"], reason or f"rolled back from the console by {user['name']}")
        return {"rollback_activity_id": rid, "activity": _activity_or_404(activity_id)}

    @app.post("/api/v1/activities/{activity_id}/rollback", tags=["gateway"],
              responses={403: {"description": "not an operator"}, 409: {"description": "not an active deployment"}})
    def rollback_activity(activity_id: str, body: RollbackRequest | None = None, user: dict = Depends(api_operator)):
        """Withdraw this deployment (the capsule's active version) and restore the previous version."""
        return rollback(activity_id, body.reason if body else None, user)

    @app.get("/api/v1/alerts", tags=["gateway"])
    def list_alerts(status: str | None = None, _user: dict = Depends(api_user)):
        """Alert activities (status open or resolved)."""
        rows = gateway().list_activities(activity_type="alert")
        return [r for r in rows if status is None or r["status"] == status]

    def resolve(alert_id: str) -> dict:
        act = _activity_or_404(alert_id)
        if act["activity_type"] != "alert":
            raise HTTPException(409, f"activity {alert_id} is a {act['activity_type']}, not an alert")
        if act["status"] != "resolved":
            gateway().resolve_alert(alert_id)
        return _activity_or_404(alert_id)

    @app.post("/api/v1/alerts/{alert_id}/resolve", tags=["gateway"],
              responses={403: {"description": "not an operator"}, 409: {"description": "not an alert"}})
    def resolve_alert(alert_id: str, _user: dict = Depends(api_operator)):
        """Mark an alert resolved (idempotent)."""
        return resolve(alert_id)

    @app.get("/api/v1/contracts", tags=["fleet"])
    def list_contracts(_user: dict = Depends(api_user)):
        """Contracts (from --contracts and the store's claimed periods) with their latest strike."""
        return data.fleet_view(contracts())["contracts"]

    @app.get("/api/v1/queues", tags=["fleet"])
    def queues(_user: dict = Depends(api_user)):
        """Ready messages per worker queue (RabbitMQ only; empty on the embedded bus)."""
        return runner.queue_depths() if hasattr(runner, "queue_depths") else {}

    # --- server-sent events ----------------------------------------------------------------
    @app.get("/events", include_in_schema=False)
    async def events(request: Request, strike: str | None = None, _user: dict = Depends(api_user)):
        async def stream():
            last = None
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                if strike:
                    now = await run_in_threadpool(data.strike_fingerprint, strike)
                    name = "strike"
                else:
                    now = await run_in_threadpool(data.fleet_fingerprint)
                    name = "fleet"
                if last is not None and now != last:
                    yield f"event: {name}\ndata: {json.dumps(str(hash(now)))}\n\n"
                last = now
                await asyncio.sleep(EVENT_POLL_S)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    # --- pages -----------------------------------------------------------------------------
    def page(request: Request, name: str, user: dict, **context):
        return templates.TemplateResponse(request, name, {"user": user, "operator": user["role"] == "operator", **context})

    def fleet_context() -> dict:
        view = data.fleet_view(contracts())
        if hasattr(runner, "queue_depths"):
            try:
                view["queues"] = runner.queue_depths()
            except Exception as exc:  # the broker is down: say so on the page
                view["queues_error"] = f"{type(exc).__name__}: {exc}"
        return view

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def overview(request: Request, user: dict = Depends(page_user)):
        return page(request, "overview.html", user, **fleet_context())

    @app.get("/fragments/fleet", response_class=HTMLResponse, include_in_schema=False)
    def fleet_fragment(request: Request, user: dict = Depends(page_user)):
        return page(request, "_fleet.html", user, **fleet_context())

    @app.get("/strikes/{strike_id}", response_class=HTMLResponse, include_in_schema=False)
    def strike_page(request: Request, strike_id: str, user: dict = Depends(page_user)):
        return page(request, "strike.html", user, s=_strike_or_404(strike_id))

    @app.get("/fragments/strikes/{strike_id}", response_class=HTMLResponse, include_in_schema=False)
    def strike_fragment(request: Request, strike_id: str, user: dict = Depends(page_user)):
        return page(request, "_strike.html", user, s=_strike_or_404(strike_id))

    @app.get("/capsules/{capsule_id}", response_class=HTMLResponse, include_in_schema=False)
    def capsule_page(request: Request, capsule_id: str, user: dict = Depends(page_user)):
        return page(request, "capsule.html", user, c=_capsule_or_404(capsule_id))

    @app.get("/activities/{activity_id}", response_class=HTMLResponse, include_in_schema=False)
    def activity_page(request: Request, activity_id: str, user: dict = Depends(page_user)):
        act = _activity_or_404(activity_id)
        return page(request, "activity.html", user, a=act, payload=json.dumps(act.get("payload"), indent=2, default=str))

    @app.post("/activities/{activity_id}/rollback", response_class=HTMLResponse, include_in_schema=False)
    def activity_rollback_form(request: Request, activity_id: str, reason: str = Form(""), user: dict = Depends(page_user)):
        if user["role"] != "operator":
            raise HTTPException(403, "rollback needs an operator token")
        result = rollback(activity_id, reason or None, user)
        return page(request, "_activity_state.html", user, a=result["activity"], rolled=result["rollback_activity_id"])

    @app.post("/alerts/{alert_id}/resolve", response_class=HTMLResponse, include_in_schema=False)
    def alert_resolve_form(request: Request, alert_id: str, user: dict = Depends(page_user)):
        if user["role"] != "operator":
            raise HTTPException(403, "resolving an alert needs an operator token")
        return page(request, "_alert_row.html", user, a=resolve(alert_id))

    @app.get("/alerts", response_class=HTMLResponse, include_in_schema=False)
    def alerts_page(request: Request, user: dict = Depends(page_user)):
        return page(request, "alerts.html", user, alerts=gateway().list_activities(activity_type="alert"))

    return app
