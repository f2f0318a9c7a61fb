"""The portal: the page each community office, street, district command and the city command opens
every morning, over the snapshot and the list files of the latest run, each seeing only its own.

What belongs here: routes, sessions, CSRF, headers, the access log. What does not: the scope rule
(``scopes.py``), the queries (``snapshot_reader.py``), accounts (``accounts.py``), charts
(``charts.py``), the interface text (``labels.yaml``).

Every route that names a community, street or district asks ``scopes`` first and answers 404 for
anything outside the account's scope, exactly as for something that does not exist;
``tests/test_portal.py`` walks the route table so that a new route without the check fails.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import os
import secrets
import time
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeSerializer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from trace24.portal import charts, scopes
from trace24.portal import snapshot_reader as read
from trace24.portal.accounts import Accounts, Session, User
from trace24.transforms.lists.community_lists import load_layout

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
SESSION_COOKIE, LOGIN_COOKIE = "t24_session", "t24_login"
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
RETURN_HEADER = "回执编号"   # an answered list must carry the row keys the lists gave it
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class PortalConfig:
    snapshot: Path                 # <store>_read.duckdb
    lists_dir: Path                # the --out folder of trace24 run (one folder per as-of date in it)
    accounts: Path                 # portal.sqlite
    landing_dir: Path | None = None   # where uploaded answers go (community/ of the list's day); None: no uploads
    secure_cookies: bool = True


    # uvicorn's worker processes build the app themselves (``app_from_environment``): the command
    # line hands them the configuration through the environment.
    ENVIRONMENT = "TRACE24_PORTAL_CONFIG"

    def to_environment(self) -> str:
        return json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()})

    @classmethod
    def from_environment(cls) -> PortalConfig:
        values = json.loads(os.environ[cls.ENVIRONMENT])
        return cls(**{k: (Path(v) if isinstance(v, str) else v) for k, v in values.items()})


def app_from_environment() -> FastAPI:
    """The app of one uvicorn worker process (``trace24 portal --workers N``)."""
    return create_app(PortalConfig.from_environment())


class LoginRequired(Exception):
    pass


def not_found() -> StarletteHTTPException:
    return StarletteHTTPException(status_code=404)


def load_labels() -> dict:
    return yaml.safe_load((HERE / "labels.yaml").read_text(encoding="utf-8"))


def create_app(config: PortalConfig) -> FastAPI:
    accounts = Accounts(config.accounts)
    # Every office's unfiltered list is made ahead when a snapshot opens: offices open their lists
    # all at once in the morning, and one list made on demand costs ~12 ms at a million residents.
    snapshot = read.Snapshot(config.snapshot, warm=lambda cur, info: {
        ("office", code, "", ""): table for code, table in read.every_list_table(cur, info.as_of).items()})
    if config.snapshot.exists():
        snapshot.state()   # opened (and warmed) as the worker starts, not by its first visitor
    signer = URLSafeSerializer(accounts.secret_key, salt="trace24-portal")
    labels = load_labels()
    layout = load_layout()     # the lists' own wording: headers, bed kinds
    list_headers = list(layout.headers)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(t=labels, quote=lambda s: urllib.parse.quote(str(s), safe=""))
    app = FastAPI(title="trace24 portal", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    # --- the frame: headers, access log, errors -------------------------------------------------
    @app.middleware("http")
    async def frame(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        # The server's own time (Server-Timing): what a load test tells apart from its client's.
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"   # personal pages stay out of every cache
            route = request.scope.get("route")
            # In a worker thread: the write may wait for the other worker's, and the event loop must not.
            await run_in_threadpool(accounts.record_access, getattr(request.state, "user", None), request.method,
                                    getattr(route, "path", "(no route)"), getattr(request.state, "scope_code", None),
                                    response.status_code)
        return response

    def page(request: Request, name: str, context: dict, status_code: int = 200) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"user": getattr(request.state, "user", None),
                                                          "csrf": getattr(request.state, "csrf", ""), **context},
                                          status_code=status_code)

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, _exc: LoginRequired):
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def error_page(request: Request, exc: StarletteHTTPException):
        message = {404: labels["not_found"], 400: labels["bad_request"], 403: labels["bad_request"],
                   405: labels["not_found"], 413: labels["office"]["upload_too_large"],
                   429: labels["login_locked"]}.get(exc.status_code, labels["server_error"])
        return page(request, "error.html", {"message": message}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def failure_page(request: Request, exc: Exception):
        log.error("portal error on %s: %s", getattr(request.scope.get("route"), "path", "?"), exc.__class__.__name__)
        return page(request, "error.html", {"message": labels["server_error"]}, status_code=500)

    # --- sessions -------------------------------------------------------------------------------
    def viewer(request: Request) -> Session:
        signed = request.cookies.get(SESSION_COOKIE)
        try:
            token = signer.loads(signed, salt="session") if signed else None
        except BadSignature:
            token = None
        session = accounts.session(token) if isinstance(token, str) else None
        if session is None:
            raise LoginRequired
        request.state.user, request.state.csrf = session.user, session.csrf_token
        return session

    def checked_form(request: Request, session: Session, csrf_token: str) -> None:
        if not hmac.compare_digest(csrf_token.encode(), session.csrf_token.encode()):
            raise StarletteHTTPException(status_code=403)

    def state(request: Request, scope_code: str | None = None):
        request.state.scope_code = scope_code
        try:
            return snapshot.state()
        except FileNotFoundError as exc:
            raise StarletteHTTPException(status_code=503) from exc

    def cookie(response: Response, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, secure=config.secure_cookies,
                            samesite="strict", path="/")

    @app.get("/login")
    def login_form(request: Request):
        nonce = secrets.token_urlsafe(16)
        response = page(request, "login.html", {"login_csrf": nonce, "error": None})
        cookie(response, LOGIN_COOKIE, signer.dumps(nonce, salt="login"), max_age=3600)
        return response

    @app.post("/login")
    def log_in(request: Request, username: str = Form(..., max_length=40), password: str = Form(..., max_length=200),
               csrf_token: str = Form(..., max_length=100)):
        try:
            nonce = signer.loads(request.cookies.get(LOGIN_COOKIE, ""), salt="login")
        except BadSignature:
            nonce = None
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(), csrf_token.encode()):
            raise StarletteHTTPException(status_code=403)
        client = request.client.host if request.client else "?"
        if accounts.is_locked_out(username, client):
            raise StarletteHTTPException(status_code=429)
        token = accounts.log_in(username, password, client)
        if token is None:
            return page(request, "login.html", {"login_csrf": nonce, "error": labels["login_failed"]},
                        status_code=401)
        response = RedirectResponse(scopes.home_path(accounts.session(token).user), status_code=303)
        cookie(response, SESSION_COOKIE, signer.dumps(token, salt="session"), max_age=12 * 3600)
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    @app.post("/logout")
    def log_out(request: Request, session: Session = Depends(viewer), csrf_token: str = Form(..., max_length=100)):
        checked_form(request, session, csrf_token)
        accounts.log_out(signer.loads(request.cookies[SESSION_COOKIE], salt="session"))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/")
    def home(session: Session = Depends(viewer)):
        return RedirectResponse(scopes.home_path(session.user), status_code=303)

    # --- a community's list ----------------------------------------------------------------------
    def community_or_404(request: Request, user: User, code: str):
        cur, info, directory, _ = state(request, code)
        if not scopes.can_read_community(user, code, directory):
            raise not_found()
        return cur, info, directory[code]

    def office_page(request: Request, session: Session, code: str, grid: str, category: str, notice: str | None,
                    status_code: int = 200):
        cur, info, community = community_or_404(request, session.user, code)

        table = snapshot.made(info, ("office", code, grid, category),
                              lambda: read.list_table(cur, info.as_of, code, grid, category))
        return page(request, "office.html", {
            "info": info, "community": community, "grid": grid, "category": category, "table": table,
            "headers": list_headers[:read.SHOWN_CELLS],
            "uploads": config.landing_dir is not None, "notice": notice}, status_code=status_code)

    @app.get("/c/{community_code}")
    def office_list(request: Request, community_code: str, grid: str = "", category: str = "",
                    session: Session = Depends(viewer)):
        return office_page(request, session, community_code, grid[:40], category[:40], None)

    @app.get("/c/{community_code}/p/{row_key}")
    def office_person(request: Request, community_code: str, row_key: str, session: Session = Depends(viewer)):
        """One person of the list, by the row's 回执编号 (opaque): the row, the office's answers, the checks."""
        cur, info, community = community_or_404(request, session.user, community_code)
        row = read.list_row(cur, info.as_of, community_code, row_key[:40])
        if row is None:
            raise not_found()
        answers, checks = read.row_history(cur, community_code, row_key)
        return page(request, "person.html", {"info": info, "community": community, "row": row,
                                             "headers": list_headers, "answers": answers, "checks": checks})

    def download(request: Request, session: Session, code: str | None, district: str | None, workbook: bool):
        if code is not None:
            cur, info, _ = community_or_404(request, session.user, code)
        else:
            cur, info, _, districts = state(request, district)
            if not scopes.can_read_district(session.user, district, districts):
                raise not_found()
        name = read.list_file(cur, info.as_of, code, district)
        path = read.delivered_file(config.lists_dir, info.as_of, name, workbook) if name else None
        if path is None:
            raise not_found()
        media = ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" if workbook
                 else "text/csv; charset=utf-8")
        return FileResponse(path, media_type=media, filename=path.name)

    @app.get("/c/{community_code}/list.csv")
    def office_csv(request: Request, community_code: str, session: Session = Depends(viewer)):
        return download(request, session, community_code, None, workbook=False)

    @app.get("/c/{community_code}/list.xlsx")
    def office_xlsx(request: Request, community_code: str, session: Session = Depends(viewer)):
        return download(request, session, community_code, None, workbook=True)

    @app.post("/c/{community_code}/returns")
    def office_returns(request: Request, community_code: str, session: Session = Depends(viewer),
                       csrf_token: str = Form(..., max_length=100), answered: UploadFile = File(...)):
        checked_form(request, session, csrf_token)
        _, info, _ = community_or_404(request, session.user, community_code)
        if config.landing_dir is None or session.user.role != "office":
            raise not_found()   # an answer is the office's own word: no street or command answers for it
        content = answered.file.read(MAX_UPLOAD_BYTES + 1)
        if len(content) > MAX_UPLOAD_BYTES:
            raise StarletteHTTPException(status_code=413)
        suffix = _answer_format(content)
        if suffix is None:
            return office_page(request, session, community_code, "", "", labels["office"]["upload_wrong_type"],
                               status_code=400)
        # The name is the server's: the feed, the office's code (which office answered) and the time.
        received = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        folder = config.landing_dir / f"{info.as_of:%Y-%m-%d}" / "community"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"list_returns_{community_code}_portal{received}{secrets.token_hex(2)}.{suffix}"
        partial = target.with_name("." + target.name + ".partial")
        partial.write_bytes(content)
        partial.replace(target)    # the next run never sees half a file
        return office_page(request, session, community_code, "", "",
                           f"{labels['office']['upload_done']}{target.name}")

    # --- a street, a district, the city -----------------------------------------------------------
    @app.get("/s/{street_code}")
    def street(request: Request, street_code: str, session: Session = Depends(viewer)):
        cur, info, directory, _ = state(request, street_code)
        if not scopes.can_read_street(session.user, street_code, directory):
            raise not_found()
        members = [c for c in directory.values() if c.street_code == street_code]
        counts = read.category_counts(cur, info.as_of, [c.community_code for c in members])
        return page(request, "street.html", {"info": info, "communities": members, "counts": counts,
                                             "street_name": members[0].street or street_code})

    def district_or_404(request: Request, user: User, district: str):
        cur, info, directory, districts = state(request, district)
        if not scopes.can_read_district(user, district, districts):
            raise not_found()
        return cur, info, directory

    @app.get("/d/{district}")
    def district_dashboard(request: Request, district: str, session: Session = Depends(viewer)):
        cur, info, directory = district_or_404(request, session.user, district)
        members = [c for c in directory.values() if c.district == district]
        return page(request, "district.html", {
            "info": info, "district": district, "communities": members,
            "counts": read.category_counts(cur, info.as_of, [c.community_code for c in members]),
            "clock": read.compliance(cur, district), "unplaced": read.list_rows(cur, info.as_of, None, district),
            "headers": list_headers, "beds": read.beds(cur, district), "waiting": read.waiting(cur, district),
            "transfers": read.transfers(cur, district), "bed_kinds": layout.bed_kinds,
            "areas": read.active_areas(cur, district)})

    @app.get("/d/{district}/unplaced.csv")
    def district_unplaced(request: Request, district: str, session: Session = Depends(viewer)):
        return download(request, session, None, district, workbook=False)

    @app.get("/d/{district}/compliance.svg")
    def district_compliance(request: Request, district: str, session: Session = Depends(viewer)):
        cur, _, _ = district_or_404(request, session.user, district)
        return _svg(charts.compliance_chart(read.compliance(cur, district)))

    @app.get("/d/{district}/curve.svg")
    def district_curve(request: Request, district: str, session: Session = Depends(viewer)):
        cur, _, _ = district_or_404(request, session.user, district)
        return _svg(charts.epidemic_curve(read.district_cases_per_day(cur, district)))

    @app.get("/city")
    def city(request: Request, session: Session = Depends(viewer)):
        if session.user.role != "city":
            raise not_found()
        cur, info, _, _ = state(request)
        return page(request, "city.html", {"info": info, "districts": read.district_totals(cur, info.as_of)})

    @app.get("/access-log")
    def access_log(request: Request, session: Session = Depends(viewer)):
        if session.user.role != "city":
            raise not_found()
        return page(request, "access_log.html", {"entries": accounts.access_log()})

    # --- pseudonymous figures -----------------------------------------------------------------------
    def epidemiology(request: Request, session: Session):
        if session.user.role not in ("epidemiologist", "city"):
            raise not_found()
        return state(request)

    @app.get("/epi")
    def epi(request: Request, session: Session = Depends(viewer)):
        cur, info, _, _ = epidemiology(request, session)
        return page(request, "epi.html", {"info": info, "cases": read.case_clocks(cur)})

    @app.get("/epi/curve.svg")
    def epi_curve(request: Request, session: Session = Depends(viewer)):
        cur, _, _, _ = epidemiology(request, session)
        return _svg(charts.epidemic_curve(read.cases_per_day(cur)))

    @app.get("/epi/compliance.svg")
    def epi_compliance(request: Request, session: Session = Depends(viewer)):
        cur, _, _, _ = epidemiology(request, session)
        return _svg(charts.compliance_chart(read.compliance(cur, None)))

    return app


def _svg(body: bytes) -> Response:
    return Response(body, media_type="image/svg+xml")


def _answer_format(content: bytes) -> str | None:
    """``xlsx`` or ``csv`` when the upload is a workbook or UTF-8 text whose first sheet or line has a
    回执编号 column; None otherwise. What its rows say is the returns feed's to check at the next run."""
    import io

    if content.startswith(b"PK\x03\x04"):
        from python_calamine import CalamineError, CalamineWorkbook

        try:
            book = CalamineWorkbook.from_filelike(io.BytesIO(content))
            first = next(iter(book.get_sheet_by_index(0).iter_rows()), [])
        except (CalamineError, ValueError, IndexError):
            return None
        return "xlsx" if RETURN_HEADER in [str(c).strip() for c in first] else None
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    first_line = text.split("\n", 1)[0]
    return "csv" if "\x00" not in text and RETURN_HEADER in [c.strip() for c in first_line.split(",")] else None
