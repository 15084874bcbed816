"""/api/v1/auth: register, log in (JSON or the OAuth2 password form used by /docs), refresh, log out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.security import OAuth2PasswordRequestForm

from outputhub.common.schemas import LoginRequest, RefreshRequest, RegisterRequest, TokenPair, UserRead
from outputhub.server.api.auth import service
from outputhub.server.deps import ClaimsDep, CurrentUserDep, NowDep, ServicesDep, SessionDep
from outputhub.server.storage.database import unit_of_work

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/register", status_code=status.HTTP_201_CREATED)
def register(data: RegisterRequest, session: SessionDep, now: NowDep) -> UserRead:
    user = service.register(session, data=data, now=now)
    return UserRead.model_validate(user, from_attributes=True)


@router.post("/login")
def login(data: LoginRequest, session: SessionDep, services: ServicesDep, now: NowDep) -> TokenPair:
    return service.login(session, email=data.email, password=data.password, policy=services.auth, now=now)


@router.post("/token", summary="Log in with the OAuth2 password form (username = email)")
def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    services: ServicesDep,
    now: NowDep,
) -> TokenPair:
    return service.login(session, email=form.username, password=form.password, policy=services.auth, now=now)


@router.post("/refresh")
def refresh(data: RefreshRequest, services: ServicesDep, now: NowDep) -> TokenPair:
    """Swap a refresh token for a new pair (rotation). The token just replaced, sent again within
    ``refresh_retry_seconds`` (its answer was lost), gets the same pair again; later it revokes the login."""
    try:
        with unit_of_work(services.session_factory) as session:
            return service.refresh(session, refresh_token=data.refresh_token, policy=services.auth, now=now)
    except service.RefreshTokenReusedError as exc:
        # the failed attempt rolled back; the revocation gets a transaction of its own
        with unit_of_work(services.session_factory) as session:
            service.logout(session, session_id=exc.session_id, now=now)
        raise


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(claims: ClaimsDep, session: SessionDep, now: NowDep) -> None:
    """Revoke this login: its refresh token and every access token issued from it stop working at once."""
    service.logout(session, session_id=claims.session_id, now=now)


@router.get("/me")
def me(user: CurrentUserDep) -> UserRead:
    return UserRead.model_validate(user, from_attributes=True)
