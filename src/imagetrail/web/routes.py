"""The web explorer's pages, served by the API process with the API's authentication.

Every page is server-rendered (Jinja2) and works without JavaScript; tables are paged and
sorted on the server. Data comes from the same in-process functions the API uses: the
backend's trace service and the cloud layer's explorer queries.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool

from imagetrail import __version__
from imagetrail.auth import Principal, sso_grants
from imagetrail.auth import browser_sessions as session_store
from imagetrail.auth.api_keys import looks_like_api_key
from imagetrail.auth.dependencies import authenticate_request
from imagetrail.queries import pipeline_risk
from imagetrail.sanitize import safe_url
from imagetrail.web import explorer_view, remediation_view, sso, trail_view
from imagetrail.web.graph import render_svg
from imagetrail.web.lookup import image_href, resolve
from imagetrail.web.session import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    WebSession,
    check_csrf,
    clear_cookie,
    safe_next,
    set_cookie,
    sign_in_csrf_token,
    sign_in_token_ok,
    web_reader,
)
from imagetrail.web.trail_view import short_repository

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
MAX_FORM_BYTES = 256 * 1024

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.globals.update(image_href=image_href, short_repo=short_repository, version=__version__)


def _ago(value: Optional[datetime]) -> str:
    if value is None:
        return "never"
    if value.tzinfo is None:  # SQLite returns naive datetimes; the backend stores UTC
        value = value.replace(tzinfo=timezone.utc)
    seconds = max((datetime.now(timezone.utc) - value).total_seconds(), 0)
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = int(seconds // size)
            label = f"{count} {unit}{'s' if unit == 'day' and count != 1 else ''}"
            return f"{label} ago ({value:%Y-%m-%d %H:%M} UTC)"
    return f"just now ({value:%Y-%m-%d %H:%M} UTC)"


templates.env.globals["ago"] = _ago

_BREAK_AFTER = re.compile(r"([/:@])")


def _breakable(text: object) -> Markup:
    """Let long identifiers (image references, workload names, e-mail addresses) wrap after
    '/', ':' and '@' instead of in the middle of a word."""
    return Markup(_BREAK_AFTER.sub(r"\1<wbr>", str(escape(text))))


templates.env.filters["breakable"] = _breakable
# Every link built from report or scan data goes through this filter (http/https only).
templates.env.filters["safe_url"] = safe_url


def render(
    request: Request,
    name: str,
    web: Optional[WebSession],
    section: str = "",
    status_code: int = 200,
    **context,
) -> HTMLResponse:
    context.update(
        principal=web.principal if web else None,
        principal_label=web.label if web else "",
        signed_in_with_cookie=bool(web and web.via_cookie),
        csrf_token=web.csrf_token if web else "",
        section=section,
    )
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"  # pages show access-controlled data
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; "
        "style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    )
    return response


async def _form(request: Request) -> Dict[str, List[str]]:
    """An application/x-www-form-urlencoded body. Parsed with the standard library: these forms
    carry a few short fields, so python-multipart (for uploads) is not needed."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(status_code=413, detail=f"the form is larger than {MAX_FORM_BYTES} bytes")
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def _first(form: Dict[str, List[str]], name: str) -> str:
    return (form.get(name) or [""])[0]


# --- static assets and sign-in ------------------------------------------------------------------


@router.get("/static/{name}", name="web_static")
def static_file(name: str) -> Response:
    path = STATIC_DIR / name
    if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
        raise HTTPException(status_code=404, detail="no such asset")
    return FileResponse(
        path, media_type=STATIC_TYPES[path.suffix], headers={"Cache-Control": "public, max-age=3600"}
    )


def _sso(request: Request):
    """The configured single sign-on provider (built once per app), or None."""
    state = request.app.state
    if not hasattr(state, "sso_provider"):
        state.sso_provider = sso.provider_for(state.settings)
    return state.sso_provider


def _login_page(request: Request, next_url: str, error: Optional[str] = None, status_code: int = 200) -> Response:
    """The sign-in form, bound to this browser's sign-in cookie (created here when missing)."""
    browser_token = request.cookies.get(SIGN_IN_COOKIE) or session_store.new_token()
    provider = _sso(request)
    response = render(request, "login.html", None, status_code=status_code, next_url=next_url, error=error,
                      sign_in_csrf=sign_in_csrf_token(browser_token),
                      sso_label=provider.label if provider else "",
                      idle_minutes=request.app.state.settings.web_session_idle_minutes)
    set_cookie(response, request, SIGN_IN_COOKIE, browser_token, samesite="lax")
    return response


_FORGED_SIGN_IN = "This sign-in form has expired or did not come from this site: sign in again from this page."


@router.get("/login", name="web_login")
def login_page(request: Request, next: str = "/") -> Response:
    return _login_page(request, safe_next(next))


def _signed_in(request: Request, response: Response, principal: Principal, name: str,
               api_key_id: Optional[str] = None) -> Response:
    state = request.app.state
    token = session_store.open_session(state.sessions, state.settings, principal, name, api_key_id)
    set_cookie(response, request, SESSION_COOKIE, token)
    clear_cookie(response, SIGN_IN_COOKIE)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    key = _first(form, "api_key").strip()
    target = safe_next(_first(form, "next"))
    if not sign_in_token_ok(request, _first(form, "csrf_token")):
        return _login_page(request, target, _FORGED_SIGN_IN, status_code=403)
    if not looks_like_api_key(key):
        # Job and app tokens are for the API (and are not verified here, which may mean fetching an
        # issuer's keys); people sign in with a key or single sign-on.
        return _login_page(request, target, "Sign in with an ImageTrail API key (itk_…) here.", status_code=401)
    try:
        # the async path: a key lookup never blocks the event loop
        principal = await authenticate_request(
            request, HTTPAuthorizationCredentials(scheme="Bearer", credentials=key)
        )
    except HTTPException as exc:
        return _login_page(
            request,
            target,
            "That key was not accepted: it is unknown or revoked. Check it, or create one "
            "with 'imagetrail keys create --org ORG --scope read'.",
            status_code=exc.status_code,
        )
    if not principal.has_scope("read"):
        return _login_page(request, target, "That key cannot read: create one with '--scope read'.", 403)
    key_id = principal.subject.partition(":")[2]
    response = RedirectResponse(target, status_code=303)
    return await run_in_threadpool(_signed_in, request, response, principal, principal.kind, key_id)


@router.post("/login/sso", name="web_sso_start")
async def sso_start(request: Request) -> Response:
    form = await _form(request)
    target = safe_next(_first(form, "next"))
    provider = _sso(request)
    if provider is None:
        raise HTTPException(status_code=404, detail="single sign-on is not configured (IMAGETRAIL_SSO_PROVIDER)")
    browser_token = request.cookies.get(SIGN_IN_COOKIE)
    if not browser_token or not sign_in_token_ok(request, _first(form, "csrf_token")):
        return _login_page(request, target, _FORGED_SIGN_IN, status_code=403)
    settings = request.app.state.settings
    redirect_uri = settings.sso_redirect_uri or str(request.url_for("web_sso_callback"))
    try:
        flow = await run_in_threadpool(provider.begin, redirect_uri)
        await run_in_threadpool(session_store.begin_sign_in, request.app.state.sessions, settings,
                                browser_token, flow, target)
    except sso.SsoFailed as exc:
        return _login_page(request, target, f"Single sign-on is unavailable: {exc}", status_code=exc.status_code)
    return RedirectResponse(flow["auth_uri"], status_code=303)


@router.get("/auth/callback", name="web_sso_callback")
def sso_callback(request: Request) -> Response:
    state = request.app.state
    provider = _sso(request)
    browser_token = request.cookies.get(SIGN_IN_COOKIE)
    pending = session_store.take_sign_in(state.sessions, browser_token) if browser_token and provider else None
    if pending is None:
        return _login_page(request, "/", "This sign-in was not started in this browser or took too long: "
                           "start it again here.", status_code=400)
    params = {k: v[:4096] for k, v in request.query_params.items()}
    try:
        claims = provider.finish(json.loads(pending.flow), params)
        principal = sso_grants.principal_for(claims, state.settings)
    except sso.SsoFailed as exc:
        return _login_page(request, pending.next_url, f"Single sign-on failed: {exc}", status_code=exc.status_code)
    except sso_grants.NoAccess as exc:
        response = render(request, "no_access.html", None, status_code=403, person=exc.name, values=exc.values,
                          groups_overage=exc.groups_overage)
        clear_cookie(response, SIGN_IN_COOKIE)
        return response
    name = sso_grants.display_name(claims)
    # A page of this site moves on to the target: a redirect chain that began at the provider
    # would not carry the SameSite=Strict session cookie to the first page.
    response = render(request, "signed_in.html", None, next_url=pending.next_url, person=name)
    return _signed_in(request, response, principal, name)


@router.post("/logout", name="web_logout")
async def logout(request: Request, web: WebSession = Depends(web_reader)) -> Response:
    check_csrf(web, _first(await _form(request), "csrf_token"))
    token = request.cookies.get(SESSION_COOKIE)
    if web.via_cookie and token:
        await run_in_threadpool(session_store.close_session, request.app.state.sessions, token)
    response = RedirectResponse("/login", status_code=303)
    clear_cookie(response, SESSION_COOKIE)
    return response


# --- search ---------------------------------------------------------------------------------------


@router.get("/", name="web_home")
def home(request: Request, web: WebSession = Depends(web_reader)) -> HTMLResponse:
    return render(request, "home.html", web, section="search", query="")


@router.get("/search", name="web_search")
def search(request: Request, q: str = "", web: WebSession = Depends(web_reader)) -> Response:
    with request.app.state.sessions() as session:
        outcome = resolve(session, web.principal, q)
    if outcome.redirect:
        return RedirectResponse(outcome.redirect, status_code=303)
    if not q.strip():
        return render(request, "home.html", web, section="search", query="")
    return render(
        request,
        "results.html",
        web,
        section="search",
        query=q.strip(),
        candidates=outcome.candidates,
        message=outcome.message,
        truncated=outcome.truncated,
        status_code=200 if outcome.candidates else 404,
    )


# --- image trail ----------------------------------------------------------------------------------


@router.get("/images/{digest}", name="web_image")
def image_page(request: Request, digest: str, web: WebSession = Depends(web_reader)) -> HTMLResponse:
    digest = digest.strip().lower()
    if not trail_view.is_digest(digest):
        return render(
            request,
            "error.html",
            web,
            status_code=400,
            heading="Not a digest",
            message=f"{digest!r} is not a sha256 digest: use sha256: followed by 64 hex digits, "
            "or search with a shorter prefix.",
        )
    with request.app.state.sessions() as session:
        facts = trail_view.load_trail(session, web.principal, digest, request.app.state.settings)
    if not facts.found:
        return render(
            request,
            "error.html",
            web,
            status_code=404,
            heading="No trail for this image",
            message=f"No pipeline run you may read pushed {digest}, and no workload you may see runs "
            "it. " + ("It was pushed in organisations your permissions hide from you." if facts.hidden_by_permissions
                      else "If it should be here, check the Coverage page."),
        )
    nodes, edges = trail_view.build_graph(facts, image_href)
    svg = render_svg(nodes, edges, title=f"Trail of image {digest}", description=trail_view.describe(facts))
    return render(request, "image.html", web, section="image", facts=facts, graph=svg)


# --- explorer -------------------------------------------------------------------------------------


@router.get("/explorer", name="web_explorer")
def explorer(request: Request, web: WebSession = Depends(web_reader)) -> HTMLResponse:
    query = explorer_view.ExplorerRequest.from_params(request.query_params)
    if query.errors:
        return render(
            request,
            "explorer.html",
            web,
            section="explorer",
            status_code=400,
            **explorer_view.context(query, None),
        )
    with request.app.state.sessions() as session:
        result = explorer_view.run(session, web.principal, query)
    return render(request, "explorer.html", web, section="explorer", **explorer_view.context(query, result))


@router.get("/explorer/pipelines", name="web_pipeline_risk")
def pipeline_risk_page(request: Request, web: WebSession = Depends(web_reader)) -> HTMLResponse:
    query = explorer_view.ExplorerRequest.from_params(request.query_params)
    days = explorer_view.days_param(request.query_params.get("days"), query.errors)
    report = None
    if not query.errors:
        with request.app.state.sessions() as session:
            try:
                report = pipeline_risk.vulnerable_pushes_by_pipeline(
                    session, web.principal, days, query.filters
                )
            except ValueError as exc:
                query.errors.append(str(exc))
    return render(
        request,
        "pipelines.html",
        web,
        section="explorer",
        status_code=400 if query.errors else 200,
        form=query.form,
        days=days,
        errors=query.errors,
        report=report,
        pipeline_href=lambda row: explorer_view.pipeline_href(query, report, row),
        running_choices=explorer_view.RUNNING_CHOICES,
        utc=explorer_view.utc_iso,
    )


@router.get("/explorer.csv", name="web_explorer_csv")
def explorer_csv(request: Request, web: WebSession = Depends(web_reader)) -> Response:
    query = explorer_view.ExplorerRequest.from_params(request.query_params)
    if query.errors:
        return Response("; ".join(query.errors) + "\n", status_code=400, media_type="text/plain")
    sessions = request.app.state.sessions
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        explorer_view.csv_lines(sessions, web.principal, query),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="imagetrail-explorer-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )


# --- remediation ----------------------------------------------------------------------------------


def _selected(values: List[str]) -> List[str]:
    return sorted({v.strip().lower() for v in values if v.strip()})


@router.get("/remediations/new", name="web_remediation_plan")
def remediation_plan(request: Request, web: WebSession = Depends(web_reader)) -> HTMLResponse:
    params = request.query_params
    digests = _selected(params.getlist("row"))
    values = remediation_view.cve_filter_values(params)
    back = "/explorer?" + urlencode(values)
    context = dict(section="explorer", back_href=back, filters=values, items=[], skipped=[], digests=[])
    if not digests:
        return render(
            request,
            "remediate_confirm.html",
            web,
            status_code=400,
            **context,
            errors=["Select at least one row (the checkboxes in the first column) first."],
        )
    plan = remediation_view.plan(
        request.app.state.sessions, request.app.state.settings, web.principal, digests, values
    )
    context.update(items=plan.items, skipped=plan.skipped, digests=[i.digest for i in plan.items])
    return render(
        request,
        "remediate_confirm.html",
        web,
        status_code=400 if plan.errors else 200,
        errors=plan.errors,
        **context,
    )


@router.post("/remediations", name="web_remediation_create")
async def remediation_create(request: Request, web: WebSession = Depends(web_reader)) -> HTMLResponse:
    form = await _form(request)
    check_csrf(web, _first(form, "csrf_token"))
    digests = _selected(form.get("row", []))
    if not digests:
        raise HTTPException(status_code=400, detail="no image selected (form field 'row')")
    values = remediation_view.cve_filter_values({k: v[0] for k, v in form.items() if v})
    outcome = remediation_view.create(
        request.app.state.sessions, request.app.state.settings, web.principal, digests, values
    )
    return render(
        request,
        "remediate_done.html",
        web,
        section="explorer",
        items=outcome.items,
        errors=outcome.errors,
        status_code=502 if outcome.errors and not outcome.items else 200,
    )


# --- coverage -------------------------------------------------------------------------------------


@router.get("/coverage", name="web_coverage")
def coverage(request: Request, page: int = 1, web: WebSession = Depends(web_reader)) -> HTMLResponse:
    from imagetrail.queries.coverage import coverage_gaps, coverage_summary
    from imagetrail.queries.untraced import untraced_pushes
    from imagetrail.views.filters import MAX_PAGE

    page = min(max(page, 1), MAX_PAGE)  # a hand-edited ?page= shows the first or the deepest page
    with request.app.state.sessions() as session:
        summary = coverage_summary(session, web.principal)
        gaps = coverage_gaps(session, web.principal, page=page, page_size=explorer_view.DEFAULT_PAGE_SIZE)
        pushes = untraced_pushes(session, web.principal, request.app.state.settings, page_size=20)
    pages = max(math.ceil(gaps.total / gaps.page_size), 1)
    return render(
        request,
        "coverage.html",
        web,
        section="coverage",
        summary=summary,
        gaps=gaps,
        untraced=pushes,
        gap_pages=pages,
        all_orgs=web.principal.organizations is None,
    )
