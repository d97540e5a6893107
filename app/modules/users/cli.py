"""`app create-superuser`: the first administrator, from the command line."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

cli = typer.Typer()


async def _create_superuser(email: str, username: str, password: str) -> str:
    from app.core.config import get_settings
    from app.core.db import Database
    from app.core.embedded import ensure_development_services
    from app.modules.users.config import load_users_settings
    from app.modules.users.models import Role
    from app.modules.users.schemas import UserCreate
    from app.modules.users.services import UsersService

    ensure_development_services()
    database = Database(get_settings())
    try:
        async with database.sessionmaker() as session:
            service = UsersService(session, load_users_settings())
            data = UserCreate(
                email=email,
                username=username,
                password=password,
                role=Role.ADMIN,
                is_verified=True,
            )
            user = await service.create(data)
            return str(user.id)
    finally:
        await database.dispose()


@cli.command("create-superuser")
def create_superuser(
    email: Annotated[str, typer.Option(prompt=True, help="the administrator's email")],
    username: Annotated[str, typer.Option(prompt=True, help="the administrator's username")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="SUPERUSER_PASSWORD",
            help="prompted for when not given (or read from SUPERUSER_PASSWORD)",
        ),
    ],
) -> None:
    """Create a verified administrator account."""
    from pydantic import ValidationError

    from app.core.errors import AppError

    try:
        user_id = asyncio.run(_create_superuser(email, username, password))
    except ValidationError as error:
        messages = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
        typer.secho(f"error: {messages}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    except AppError as error:
        typer.secho(f"error: {error.detail}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"created administrator {username} ({user_id})")
