"""The portal's routes: sign in and out (the only POSTs), then read-only pages over the API's services.

Every page is tenant-scoped exactly like the API: the organization comes from the URL, the caller must be
a member with the READ permission (else 404, as if the organization did not exist), and the pages call the
same services (prompts, outputs, custom GPTs, lookups, analytics) the API routes call.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from http import HTTPStatus
from pathlib import Path as FsPath
from typing import Annotated, Any
from urllib.parse import unquote, urlencode

from fastapi import APIRouter, Depends, FastAPI, Form, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.exceptions import HTTPException as StarletteHTTPException

from outputhub.common.errors import (
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    OutputHubError,
)
from outputhub.common.roles import Action, allows
from outputhub.server.api.analytics import service as analytics
from outputhub.server.api.analytics.service import DIMENSION_LABELS, DIMENSIONS, AnalyticsFilters
from outputhub.server.api.base import Tenant
from outputhub.server.api.custom_gpts import service as custom_gpts
from outputhub.server.api.filters import DB_INT4_MAX
from outputhub.server.api.lookups import service as lookups
from outputhub.server.api.orgs import service as orgs
from outputhub.server.api.outputs import service as outputs
from outputhub.server.api.prompts import service as prompts
from outputhub.server.cache import cached_json
from outputhub.server.deps import NowDep, ServicesDep, SessionDep
from outputhub.server.portal import charts
from outputhub.server.portal.session import (
    SESSION_COOKIE,
    PortalKeys,
    clear_session_cookie,
    csrf_ok,
    csrf_token,
    current_user,
    ensure_csrf_cookie,
    set_session_cookie,
    sign_in,
    sign_out,
)
from outputhub.server.storage.tables import (
    AccuracyLevel,
    AgentGroup,
    DevelopmentStage,
    GptModel,
    KnowledgeType,
    Tag,
    User,
)

HERE = FsPath(__file__).resolve().parent
PREFIX = "/portal"
PAGE_SIZE = 20
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}
ANALYTICS_FILTERS = (
    "gpt_model_id",
    "custom_gpt_id",
    "agent_group_id",
    "development_stage_id",
    "knowledge_type_id",
    "tag_id",
)
CSV_NAMES = {
    "overview": "overview",
    "accuracy": "accuracy",
    "knowledge-types": "knowledge",
    "stage-funnel": "funnel",
    "tags": "tags",
    "best-prompts": "best",
    "worst-prompts": "worst",
}
SORTS = {"-updated_at": "Recently updated", "-created_at": "Newest", "title": "Title A-Z"}


def install_portal(app: FastAPI) -> None:
    """Add the portal's routes and its stylesheet to the app (called by ``create_app``, after the problem
    handlers: under ``/portal`` a framework error, such as a 404 for no such page, is an HTML page)."""
    services = app.state.services
    keys = PortalKeys.derive(services.settings.token_secret())
    app.state.portal_keys = keys
    environment = make_environment()
    app.include_router(build_router(environment=environment, keys=keys))
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="portal-static")
    install_error_pages(app, environment)


def is_portal_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def install_error_pages(app: FastAPI, environment: Environment) -> None:
    """Errors the framework raises before a portal route runs (no such page: 404; a method a page does not
    take: 405) are the portal's HTML error page with that status; the API keeps its problem documents."""
    api_handler = app.exception_handlers[StarletteHTTPException]

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if not is_portal_path(request.url.path):
            return await api_handler(request, exc)  # type: ignore[no-any-return]
        title, detail = ERROR_TEXTS.get(
            exc.status_code, (HTTPStatus(exc.status_code).phrase, str(exc.detail))
        )
        response = render_page(
            environment, request, "error.html", status=exc.status_code, title=title, detail=detail
        )
        response.headers.update(exc.headers or {})
        return response

    app.add_exception_handler(StarletteHTTPException, handler)


ERROR_TEXTS = {
    404: ("Not found", "This page does not exist, or you are not a member of its organization."),
    405: ("Not allowed", "This page can only be read: the portal changes nothing."),
}


def render_page(
    environment: Environment, request: Request, template: str, *, status: int = 200, **context: Any
) -> HTMLResponse:
    context.update(request=request, csrf=csrf_token(request), url_with=url_with, prefix=PREFIX)
    html = environment.get_template(template).render(**context)
    response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
    ensure_csrf_cookie(request, response)
    return response


def make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(("html",)),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["day"] = lambda value: value.strftime("%-d %b %Y") if value else ""
    env.filters["excerpt"] = _excerpt
    env.globals["score_color"] = charts.score_color
    return env


def _when(value: datetime | None) -> str:
    return value.strftime("%-d %b %Y, %H:%M UTC") if value else ""


def _excerpt(text: str, length: int = 220) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= length else flat[: length - 1].rstrip() + "…"


class SignInRequiredError(Exception):
    pass


@dataclass(frozen=True)
class Viewer:
    user: User
    auth_session_id: uuid.UUID


@dataclass(frozen=True)
class OrgPage:
    viewer: Viewer
    tenant: Tenant
    org_name: str


def get_viewer(request: Request, session: SessionDep, now: NowDep) -> Viewer:
    """The signed-in user (from the session cookie); otherwise the page redirects to the sign-in form."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise SignInRequiredError
    keys: PortalKeys = request.app.state.portal_keys
    user, auth_session_id = current_user(session, keys=keys, cookie=cookie, now=now)
    return Viewer(user=user, auth_session_id=auth_session_id)


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


def get_org_page(org_id: Annotated[uuid.UUID, Path()], viewer: ViewerDep, session: SessionDep) -> OrgPage:
    """The organization in the URL, for a member allowed to read it; anyone else gets 404."""
    role = orgs.resolve_membership(session, org_id=org_id, user_id=viewer.user.id)
    if role is None or not allows(role, Action.READ):
        raise NotFoundError("organization", org_id)
    tenant = Tenant(org_id=org_id, role=role, actor=f"user:{viewer.user.id}", user_id=viewer.user.id)
    return OrgPage(viewer=viewer, tenant=tenant, org_name=orgs.get_org(session, tenant=tenant).name)


OrgDep = Annotated[OrgPage, Depends(get_org_page)]


def _ids(values: list[str], field: str) -> list[uuid.UUID]:
    """Ids from a form's query parameters; an empty choice ("Any") means no filter."""
    out: list[uuid.UUID] = []
    for value in values:
        if value.strip():
            try:
                out.append(uuid.UUID(value.strip()))
            except ValueError as exc:
                raise InvalidInputError(f"query.{field}", "must be an id") from exc
    return out


def _day(value: str | None, field: str) -> date | None:
    if not value or not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError as exc:
        raise InvalidInputError(f"query.{field}", "must be a date (YYYY-MM-DD)") from exc


def _day_after(day: date | None) -> datetime | None:
    """The exclusive end of a date range that includes ``day``. The last day the calendar holds
    (9999-12-31, which a date picker offers) has no day after it: the range is then open-ended, as
    nothing can be created later."""
    if day is None or day == date.max:
        return None
    return datetime.combine(day + timedelta(days=1), datetime.min.time())


def _safe_next(target: str | None) -> str:
    """Only redirect back into the portal (no open redirect): a path under ``/portal/`` that a browser
    resolves to itself. No dot segments, not even percent-encoded (``/portal/../api`` is ``/api``), no
    backslash, and no control character or space (a browser drops tabs and newlines, joining what they
    separate); anything else goes to the organization list."""
    if not target or not target.startswith(PREFIX + "/"):
        return f"{PREFIX}/orgs"
    path = target.split("?", 1)[0].split("#", 1)[0]
    if (
        any(segment in (".", "..") for segment in unquote(path).split("/"))
        or "\\" in target
        or any(ord(char) <= 0x20 or ord(char) == 0x7F for char in target)
    ):
        return f"{PREFIX}/orgs"
    return target


def url_with(request: Request, **changes: Any) -> str:
    """This page's URL with some query parameters replaced (None drops one); paging restarts unless given."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in changes and k != "cursor"]
    for key, value in changes.items():
        if value is None or value == "":
            continue
        for item in value if isinstance(value, list) else [value]:
            params.append((key, str(item)))
    query = urlencode(params)
    return request.url.path + (f"?{query}" if query else "")


def build_router(*, environment: Environment, keys: PortalKeys) -> APIRouter:
    def render(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        return render_page(environment, request, template, status=status, **context)

    def error_page(request: Request, *, status: int, title: str, detail: str) -> HTMLResponse:
        return render(request, "error.html", status=status, title=title, detail=detail)

    class PortalRoute(APIRoute):
        """Errors become pages: sign-in redirects, 404 for other organizations, 422 for bad parameters."""

        def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                try:
                    return await handler(request)
                except (SignInRequiredError, AuthenticationError):
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    response = RedirectResponse(
                        f"{PREFIX}/login?{urlencode({'next': target})}", status_code=303
                    )
                    if request.cookies.get(SESSION_COOKIE):
                        clear_session_cookie(response, request)
                    return response
                except RequestValidationError as exc:
                    fields = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in exc.errors())
                    return error_page(
                        request, status=422, title="That address is not quite right", detail=fields
                    )
                except NotFoundError:
                    return error_page(
                        request, status=404, title=ERROR_TEXTS[404][0], detail=ERROR_TEXTS[404][1]
                    )
                except OverflowError:  # a number too large for the database, past the parameters' bounds
                    return error_page(
                        request, status=422, title="That address is not quite right", detail="a number"
                    )
                except OutputHubError as exc:
                    return error_page(request, status=exc.status, title=exc.title, detail=exc.detail)

            return guarded

    router = APIRouter(prefix=PREFIX, route_class=PortalRoute, include_in_schema=False)

    def taxonomy(session: Any, services: Any, tenant: Tenant) -> dict[str, dict[str, Any]]:
        """Names of every lookup and custom GPT, by id (cached until the organization's next write)."""

        def compute() -> dict[str, list[list[Any]]]:
            out: dict[str, list[list[Any]]] = {}
            for key, table in (
                ("tags", Tag),
                ("stages", DevelopmentStage),
                ("levels", AccuracyLevel),
                ("kinds", KnowledgeType),
                ("models", GptModel),
                ("groups", AgentGroup),
            ):
                rows, _ = lookups.list_page(
                    session,
                    lookups.KIND_BY_TABLE[table],
                    tenant=tenant,
                    q=None,
                    sort="position",
                    cursor=None,
                    limit=2000,
                )
                out[key] = [[str(r.id), r.name, getattr(r, "score", None)] for r in rows]
            gpts, _ = custom_gpts.list_page(
                session,
                tenant=tenant,
                q=None,
                gpt_model_ids=[],
                agent_group_ids=[],
                sort="name",
                cursor=None,
                limit=2000,
            )
            out["gpts"] = [[str(g.id), g.name, None] for g in gpts]
            return out

        raw = cached_json(
            services.cache,
            org_id=tenant.org_id,
            namespace="portal.taxonomy",
            params={},
            ttl_seconds=600,
            compute=compute,
        )
        return {
            key: {"names": {i: n for i, n, _ in rows}, "options": rows, "scores": {i: s for i, _, s in rows}}
            for key, rows in raw.items()
        }

    # --- sign in and out ------------------------------------------------------------------------------

    @router.get("", response_class=HTMLResponse)
    def portal_root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/orgs", status_code=303)

    @router.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, session: SessionDep, now: NowDep, next: str | None = None) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            try:
                current_user(session, keys=keys, cookie=cookie, now=now)
                return RedirectResponse(_safe_next(next), status_code=303)
            except AuthenticationError:
                pass
        return render(request, "login.html", next=_safe_next(next), email="", error=None)

    @router.post("/login", response_class=HTMLResponse)
    def login(
        request: Request,
        session: SessionDep,
        services: ServicesDep,
        now: NowDep,
        email: Annotated[str, Form(max_length=320)] = "",
        password: Annotated[str, Form(max_length=256)] = "",
        csrf: Annotated[str, Form(max_length=200)] = "",
        next: Annotated[str, Form(max_length=2000)] = "",
    ) -> Response:
        if not csrf_ok(request, csrf):
            return error_page(
                request,
                status=403,
                title="Please try again",
                detail="The sign-in form expired or came from another site. Reload the page and sign in.",
            )
        try:
            value, max_age = sign_in(
                session, keys=keys, email=email.strip(), password=password, policy=services.auth, now=now
            )
        except AuthenticationError:
            return render(
                request,
                "login.html",
                status=401,
                next=_safe_next(next),
                email=email,
                error="Wrong email or password.",
            )
        response = RedirectResponse(_safe_next(next), status_code=303)
        set_session_cookie(response, request, value=value, max_age=max_age)
        return response

    @router.post("/logout", response_class=HTMLResponse)
    def logout(
        request: Request,
        session: SessionDep,
        now: NowDep,
        csrf: Annotated[str, Form(max_length=200)] = "",
    ) -> Response:
        if not csrf_ok(request, csrf):
            return error_page(
                request, status=403, title="Please try again", detail="Reload the page, then sign out."
            )
        sign_out(session, keys=keys, cookie=request.cookies.get(SESSION_COOKIE), now=now)
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        clear_session_cookie(response, request)
        return response

    # --- organizations --------------------------------------------------------------------------------

    @router.get("/orgs", response_class=HTMLResponse)
    def org_picker(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
        memberships = orgs.list_user_orgs(session, user=viewer.user)
        return render(request, "orgs.html", viewer=viewer, memberships=memberships, page=None)

    @router.get("/orgs/{org_id}", response_class=HTMLResponse)
    def org_home(page: OrgDep) -> Response:
        return RedirectResponse(f"{PREFIX}/orgs/{page.tenant.org_id}/prompts", status_code=303)

    # --- prompts --------------------------------------------------------------------------------------

    @router.get("/orgs/{org_id}/prompts", response_class=HTMLResponse)
    def prompt_list(
        request: Request,
        page: OrgDep,
        session: SessionDep,
        services: ServicesDep,
        q: str = "",
        tag_id: Annotated[list[str] | None, Query()] = None,
        development_stage_id: Annotated[list[str] | None, Query()] = None,
        sort: str = "-updated_at",
        cursor: str | None = None,
    ) -> Response:
        tags, stages = _ids(tag_id or [], "tag_id"), _ids(development_stage_id or [], "development_stage_id")
        rows, next_cursor = prompts.list_page(
            session,
            tenant=page.tenant,
            q=q.strip()[:200] or None,
            tag_ids=tags,
            development_stage_ids=stages,
            accuracy_level_ids=[],
            knowledge_type_ids=[],
            custom_gpt_ids=[],
            gpt_model_ids=[],
            agent_group_ids=[],
            sort=sort,
            cursor=cursor,
            limit=PAGE_SIZE,
        )
        return render(
            request,
            "prompts.html",
            page=page,
            section="prompts",
            items=prompts.to_read(session, tenant=page.tenant, rows=rows),
            next_cursor=next_cursor,
            paged=cursor is not None,
            tax=taxonomy(session, services, page.tenant),
            q=q,
            chosen={"tag_id": [str(t) for t in tags], "development_stage_id": [str(s) for s in stages]},
            sort=sort,
            sorts=SORTS,
        )

    @router.get("/orgs/{org_id}/prompts/{prompt_id}", response_class=HTMLResponse)
    def prompt_detail(
        request: Request,
        prompt_id: uuid.UUID,
        page: OrgDep,
        session: SessionDep,
        services: ServicesDep,
        from_version: Annotated[int | None, Query(alias="from", ge=1, le=DB_INT4_MAX)] = None,
        to_version: Annotated[int | None, Query(alias="to", ge=1, le=DB_INT4_MAX)] = None,
    ) -> Response:
        row = prompts.get(session, tenant=page.tenant, ident=prompt_id)
        prompt = prompts.to_read(session, tenant=page.tenant, rows=[row])[0]
        versions = prompts.list_versions(session, tenant=page.tenant, ident=prompt_id)
        diff, diff_error = None, None
        if from_version is None and to_version is None and prompt.version > 1:
            from_version, to_version = prompt.version - 1, prompt.version
        if from_version is not None or to_version is not None:
            from_version = from_version or 1
            to_version = to_version or prompt.version
            try:
                diff = prompts.diff(
                    session,
                    tenant=page.tenant,
                    ident=prompt_id,
                    from_version=from_version,
                    to_version=to_version,
                )
            except NotFoundError:
                diff_error = "There is no such version of this prompt."
        recent, more = outputs.list_page(
            session,
            tenant=page.tenant,
            q=None,
            prompt_ids=[prompt_id],
            tag_ids=[],
            knowledge_type_ids=[],
            accuracy_level_ids=[],
            custom_gpt_ids=[],
            gpt_model_ids=[],
            agent_group_ids=[],
            development_stage_ids=[],
            created_after=None,
            created_before=None,
            sort="-created_at",
            cursor=None,
            limit=10,
        )
        return render(
            request,
            "prompt.html",
            page=page,
            section="prompts",
            prompt=prompt,
            versions=versions,
            diff=diff,
            diff_error=diff_error,
            from_version=from_version,
            to_version=to_version,
            outputs=outputs.to_read(session, tenant=page.tenant, rows=recent),
            more_outputs=more is not None,
            tax=taxonomy(session, services, page.tenant),
        )

    # --- outputs --------------------------------------------------------------------------------------

    @router.get("/orgs/{org_id}/outputs", response_class=HTMLResponse)
    def output_list(
        request: Request,
        page: OrgDep,
        session: SessionDep,
        services: ServicesDep,
        q: str = "",
        prompt_id: Annotated[list[str] | None, Query()] = None,
        accuracy_level_id: Annotated[list[str] | None, Query()] = None,
        gpt_model_id: Annotated[list[str] | None, Query()] = None,
        custom_gpt_id: Annotated[list[str] | None, Query()] = None,
        agent_group_id: Annotated[list[str] | None, Query()] = None,
        knowledge_type_id: Annotated[list[str] | None, Query()] = None,
        tag_id: Annotated[list[str] | None, Query()] = None,
        development_stage_id: Annotated[list[str] | None, Query()] = None,
        sort: str = "-created_at",
        cursor: str | None = None,
    ) -> Response:
        chosen = {
            "prompt_id": _ids(prompt_id or [], "prompt_id"),
            "accuracy_level_id": _ids(accuracy_level_id or [], "accuracy_level_id"),
            "gpt_model_id": _ids(gpt_model_id or [], "gpt_model_id"),
            "custom_gpt_id": _ids(custom_gpt_id or [], "custom_gpt_id"),
            "agent_group_id": _ids(agent_group_id or [], "agent_group_id"),
            "knowledge_type_id": _ids(knowledge_type_id or [], "knowledge_type_id"),
            "tag_id": _ids(tag_id or [], "tag_id"),
            "development_stage_id": _ids(development_stage_id or [], "development_stage_id"),
        }
        rows, next_cursor = outputs.list_page(
            session,
            tenant=page.tenant,
            q=q.strip()[:200] or None,
            prompt_ids=chosen["prompt_id"],
            tag_ids=chosen["tag_id"],
            knowledge_type_ids=chosen["knowledge_type_id"],
            accuracy_level_ids=chosen["accuracy_level_id"],
            custom_gpt_ids=chosen["custom_gpt_id"],
            gpt_model_ids=chosen["gpt_model_id"],
            agent_group_ids=chosen["agent_group_id"],
            development_stage_ids=chosen["development_stage_id"],
            created_after=None,
            created_before=None,
            sort=sort,
            cursor=cursor,
            limit=PAGE_SIZE,
        )
        items = outputs.to_read(session, tenant=page.tenant, rows=rows)
        prompt_titles = _prompt_titles(
            session, page.tenant, {o.prompt_id for o in items} | set(chosen["prompt_id"])
        )
        return render(
            request,
            "outputs.html",
            page=page,
            section="outputs",
            items=items,
            next_cursor=next_cursor,
            paged=cursor is not None,
            tax=taxonomy(session, services, page.tenant),
            q=q,
            chosen={k: [str(v) for v in vs] for k, vs in chosen.items()},
            prompt_titles=prompt_titles,
            sort=sort,
            sorts={"-created_at": "Newest", "created_at": "Oldest", "-updated_at": "Recently updated"},
        )

    @router.get("/orgs/{org_id}/outputs/{output_id}", response_class=HTMLResponse)
    def output_detail(
        request: Request, output_id: uuid.UUID, page: OrgDep, session: SessionDep, services: ServicesDep
    ) -> Response:
        row = outputs.get(session, tenant=page.tenant, ident=output_id)
        item = outputs.to_read(session, tenant=page.tenant, rows=[row])[0]
        return render(
            request,
            "output.html",
            page=page,
            section="outputs",
            output=item,
            prompt_title=_prompt_titles(session, page.tenant, {item.prompt_id}).get(str(item.prompt_id), ""),
            tax=taxonomy(session, services, page.tenant),
        )

    # --- custom GPTs ----------------------------------------------------------------------------------

    @router.get("/orgs/{org_id}/custom-gpts", response_class=HTMLResponse)
    def custom_gpt_list(
        request: Request,
        page: OrgDep,
        session: SessionDep,
        services: ServicesDep,
        q: str = "",
        agent_group_id: Annotated[list[str] | None, Query()] = None,
        gpt_model_id: Annotated[list[str] | None, Query()] = None,
        cursor: str | None = None,
    ) -> Response:
        groups = _ids(agent_group_id or [], "agent_group_id")
        models = _ids(gpt_model_id or [], "gpt_model_id")
        rows, next_cursor = custom_gpts.list_page(
            session,
            tenant=page.tenant,
            q=q.strip()[:200] or None,
            gpt_model_ids=models,
            agent_group_ids=groups,
            sort="name",
            cursor=cursor,
            limit=PAGE_SIZE,
        )
        return render(
            request,
            "custom_gpts.html",
            page=page,
            section="custom-gpts",
            items=custom_gpts.to_read(session, tenant=page.tenant, rows=rows),
            next_cursor=next_cursor,
            paged=cursor is not None,
            tax=taxonomy(session, services, page.tenant),
            q=q,
            chosen={"agent_group_id": [str(g) for g in groups], "gpt_model_id": [str(m) for m in models]},
        )

    # --- analytics ------------------------------------------------------------------------------------

    def analytics_filters(
        *,
        from_day: str | None,
        to_day: str | None,
        chosen: dict[str, list[uuid.UUID]],
    ) -> AnalyticsFilters:
        start, end = _day(from_day, "from"), _day(to_day, "to")
        return AnalyticsFilters(
            created_from=datetime.combine(start, datetime.min.time()) if start else None,
            created_to=_day_after(end),
            gpt_model_ids=tuple(chosen["gpt_model_id"]),
            custom_gpt_ids=tuple(chosen["custom_gpt_id"]),
            agent_group_ids=tuple(chosen["agent_group_id"]),
            development_stage_ids=tuple(chosen["development_stage_id"]),
            knowledge_type_ids=tuple(chosen["knowledge_type_id"]),
            tag_ids=tuple(chosen["tag_id"]),
        )

    def _chosen_from(request: Request) -> dict[str, list[uuid.UUID]]:
        return {name: _ids(request.query_params.getlist(name), name) for name in ANALYTICS_FILTERS}

    def compute_all(
        session: Any,
        services: Any,
        tenant: Tenant,
        filters: AnalyticsFilters,
        *,
        by: str,
        bucket: str,
        only: str | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Every chart of the page, or with ``only`` just that one (a CSV download needs no other chart,
        and one chart's refusal, such as too many buckets, must not refuse another's download)."""

        def run(name: str, options: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> Any:
            return lambda: analytics.cached(
                services.cache, tenant=tenant, name=name, filters=filters, options=options, compute=compute
            )

        charts: dict[str, Callable[[], dict[str, Any]]] = {
            "overview": run(
                "overview", {}, lambda: analytics.overview(session, tenant=tenant, filters=filters)
            ),
            "accuracy": run(
                "accuracy",
                {"by": by},
                lambda: analytics.accuracy(session, tenant=tenant, filters=filters, by=by),  # type: ignore[arg-type]
            ),
            "knowledge": run(
                "knowledge_types",
                {"bucket": bucket},
                lambda: analytics.knowledge_over_time(
                    session,
                    tenant=tenant,
                    filters=filters,
                    bucket=bucket,  # type: ignore[arg-type]
                ),
            ),
            "funnel": run(
                "stage_funnel", {}, lambda: analytics.stage_funnel(session, tenant=tenant, filters=filters)
            ),
            "tags": run(
                "tags",
                {"limit": 12},
                lambda: analytics.tag_usage(session, tenant=tenant, filters=filters, limit=12),
            ),
            "best": run(
                "prompt_ranking",
                {"order": "best", "limit": 8, "min_outputs": 1},
                lambda: analytics.prompt_ranking(
                    session, tenant=tenant, filters=filters, order="best", limit=8, min_outputs=1
                ),
            ),
            "worst": run(
                "prompt_ranking",
                {"order": "worst", "limit": 8, "min_outputs": 1},
                lambda: analytics.prompt_ranking(
                    session, tenant=tenant, filters=filters, order="worst", limit=8, min_outputs=1
                ),
            ),
        }
        return {name: chart() for name, chart in charts.items() if only is None or name == only}

    def _check_choice(value: str, allowed: tuple[str, ...], field: str) -> str:
        if value not in allowed:
            raise InvalidInputError(f"query.{field}", f"must be one of {', '.join(allowed)}")
        return value

    @router.get("/orgs/{org_id}/analytics", response_class=HTMLResponse)
    def analytics_page(
        request: Request,
        page: OrgDep,
        session: SessionDep,
        services: ServicesDep,
        from_day: Annotated[str | None, Query(alias="from")] = None,
        to_day: Annotated[str | None, Query(alias="to")] = None,
        by: str = "gpt_model",
        bucket: str = "week",
    ) -> Response:
        _check_choice(by, DIMENSIONS, "by")
        _check_choice(bucket, ("day", "week", "month"), "bucket")
        chosen = _chosen_from(request)
        filters = analytics_filters(from_day=from_day, to_day=to_day, chosen=chosen)
        results = compute_all(session, services, page.tenant, filters, by=by, bucket=bucket)
        figures = _charts(results, base=f"{PREFIX}/orgs/{page.tenant.org_id}")
        return render(
            request,
            "analytics.html",
            page=page,
            section="analytics",
            results=results,
            figures=figures,
            tax=taxonomy(session, services, page.tenant),
            chosen={k: [str(v) for v in vs] for k, vs in chosen.items()},
            from_day=from_day or "",
            to_day=to_day or "",
            by=by,
            bucket=bucket,
            dimensions=[(d, DIMENSION_LABELS[d][0]) for d in DIMENSIONS],
        )

    @router.get("/orgs/{org_id}/analytics/{name}.csv")
    def analytics_csv(
        request: Request,
        name: str,
        page: OrgDep,
        session: SessionDep,
        services: ServicesDep,
        from_day: Annotated[str | None, Query(alias="from")] = None,
        to_day: Annotated[str | None, Query(alias="to")] = None,
        by: str = "gpt_model",
        bucket: str = "week",
    ) -> Response:
        if name not in CSV_NAMES:
            raise NotFoundError("chart", name)
        _check_choice(by, DIMENSIONS, "by")
        _check_choice(bucket, ("day", "week", "month"), "bucket")
        filters = analytics_filters(from_day=from_day, to_day=to_day, chosen=_chosen_from(request))
        chart = CSV_NAMES[name]
        result = compute_all(session, services, page.tenant, filters, by=by, bucket=bucket, only=chart)[chart]
        return Response(
            analytics.to_csv(result),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{name}.csv"',
                "Cache-Control": "no-store",
            },
        )

    return router


def _prompt_titles(session: Any, tenant: Tenant, ids: set[uuid.UUID]) -> dict[str, str]:
    titles: dict[str, str] = {}
    for ident in ids:
        try:
            titles[str(ident)] = prompts.get(session, tenant=tenant, ident=ident).title
        except NotFoundError:
            titles[str(ident)] = "(deleted prompt)"
    return titles


def _charts(results: dict[str, dict[str, Any]], *, base: str) -> dict[str, Any]:
    accuracy = results["accuracy"]
    acc_notes = [
        f"{total} · mean {mean:g}" if mean is not None else f"{total} · unrated"
        for total, mean in zip(accuracy["totals"], accuracy["mean_score"], strict=True)
    ]
    funnel = results["funnel"]
    tags = results["tags"]
    best, worst = results["best"], results["worst"]

    def ranking(chart_id: str, result: dict[str, Any], base: str) -> Markup:
        means = result["series"][0]["data"]
        rated = result["series"][1]["data"]
        return charts.stacked_bars(
            chart_id,
            title=result["title"],
            labels=result["labels"],
            series=[charts.Series("Mean accuracy score", charts.CATEGORICAL[0], means)],
            notes=[f"{m:g} · {n} rated" for m, n in zip(means, rated, strict=True)],
            scale_max=100,
            links=[f"{base}/prompts/{key}" for key in result["keys"]],
        )

    knowledge = results["knowledge"]
    return {
        "accuracy": charts.stacked_bars(
            "chart-accuracy",
            title=accuracy["title"],
            labels=accuracy["labels"],
            series=charts.series_from(accuracy),
            notes=acc_notes,
        ),
        "knowledge": charts.stacked_columns(
            "chart-knowledge",
            title=knowledge["title"],
            labels=knowledge["labels"],
            series=charts.series_from(knowledge),
        ),
        "funnel": charts.stacked_bars(
            "chart-funnel",
            title=funnel["title"],
            labels=funnel["labels"][:-1]
            + ([funnel["labels"][-1]] if funnel["series"][0]["data"][-1] else []),
            series=[
                charts.Series(
                    "Reached this stage or later",
                    charts.CATEGORICAL[0],
                    funnel["series"][1]["data"][: len(funnel["labels"]) - 1]
                    + ([funnel["series"][1]["data"][-1]] if funnel["series"][0]["data"][-1] else []),
                )
            ],
            notes=[
                f"{reached} reached · {at} here"
                for reached, at in zip(funnel["series"][1]["data"], funnel["series"][0]["data"], strict=True)
            ],
            centered=True,
        ),
        "tags": charts.stacked_bars(
            "chart-tags",
            title=tags["title"],
            labels=tags["labels"],
            series=charts.series_from(tags, names=["Outputs"]),
            notes=[
                f"{o} outputs · {p} prompts"
                for o, p in zip(tags["series"][0]["data"], tags["series"][1]["data"], strict=True)
            ],
        ),
        "knowledge_series": [s for s in charts.series_from(knowledge) if sum(s.data)],  # type: ignore[dict-item]
        "best": ranking("chart-best", best, base),
        "worst": ranking("chart-worst", worst, base),
    }
