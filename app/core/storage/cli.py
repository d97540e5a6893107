"""`app storage`: prepare where uploaded files go."""

from __future__ import annotations

import asyncio

import typer

from app.core.config import get_settings
from app.core.storage import LocalStorage, S3Storage, create_storage

cli = typer.Typer(no_args_is_help=True, help=__doc__)


@cli.command()
def init() -> None:
    """Create the S3 bucket (STORAGE_BACKEND=s3) or the local folder, if missing."""
    storage = create_storage(get_settings())
    if isinstance(storage, S3Storage):

        async def create(s3: S3Storage) -> None:
            try:
                await s3.create_bucket()
            finally:
                await s3.aclose()

        asyncio.run(create(storage))
        typer.echo(f"bucket {storage.bucket} ready")
    elif isinstance(storage, LocalStorage):
        storage.root.mkdir(parents=True, exist_ok=True)
        typer.echo(f"folder {storage.root} ready")
