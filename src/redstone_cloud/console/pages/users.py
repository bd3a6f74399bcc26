"""Console users, for admins: list, add, disable, change role (all audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from redstone_cloud.api.common import in_transaction
from redstone_cloud.console import accounts, auth
from redstone_cloud.console.accounts import SignedIn
from redstone_cloud.console.web import backend_of, render, require
from redstone_cloud.db.models import ConsoleUser
from redstone_cloud.errors import Conflict, InvalidInput

router = APIRouter()

Admin = Annotated[SignedIn, require("admin")]


async def _page(
    request: Request, status: int = 200, errors: dict[str, str] | None = None, **form: str
) -> HTMLResponse:
    users: list[ConsoleUser] = await in_transaction(backend_of(request), accounts.list_users)
    return render(
        request,
        "users.html",
        status_code=status,
        users=users,
        roles=auth.ROLES,
        errors=errors or {},
        form=form,
    )


def _back() -> RedirectResponse:
    return RedirectResponse(f"{auth.PREFIX}/users", status_code=303)


@router.get("/users", response_class=HTMLResponse)
async def users_page(request: Request, user: Admin) -> HTMLResponse:
    return await _page(request)


@router.post("/users", response_class=HTMLResponse)
async def add_user(
    request: Request,
    user: Admin,
    name: Annotated[str, Form(max_length=256)] = "",
    role: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=auth.MAX_PASSWORD + 1)] = "",
) -> Response:
    errors = {}
    for field, check, value in (
        ("name", auth.check_name, name),
        ("role", auth.check_role, role),
        ("password", auth.check_password, password),
    ):
        try:
            check(value)
        except InvalidInput as exc:
            errors[field] = str(exc)
    if not errors:
        try:
            await in_transaction(
                backend_of(request),
                lambda s: accounts.add_user(s, user.actor, name, role, password),
            )
        except Conflict as exc:
            errors["name"] = str(exc)
    if errors:
        return await _page(request, 422, errors, name=name, role=role)
    return _back()


@router.post("/users/{name}/disable")
async def disable_user(request: Request, name: str, user: Admin) -> Response:
    await in_transaction(backend_of(request), lambda s: accounts.disable_user(s, user.actor, name))
    return _back()


@router.post("/users/{name}/role")
async def set_role(
    request: Request, name: str, user: Admin, role: Annotated[str, Form(max_length=64)] = ""
) -> Response:
    await in_transaction(
        backend_of(request), lambda s: accounts.set_role(s, user.actor, name, role)
    )
    return _back()
