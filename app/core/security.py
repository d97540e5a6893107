"""Password hashing (argon2id, run off the event loop), JWTs with a pinned algorithm, and
opaque random tokens stored only as their SHA-256 digest."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import anyio.to_thread
import jwt
from pwdlib import PasswordHash
from pwdlib.exceptions import PwdlibError
from pwdlib.hashers.argon2 import Argon2Hasher

JWT_ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("exp", "iat", "sub", "jti", "iss", "aud")
_DUMMY_PASSWORD = "dummy-password-used-to-equalise-timing"  # noqa: S105
MAX_CONCURRENT_HASHES = min(4, os.cpu_count() or 2)


class InvalidToken(Exception):
    """A JWT that is malformed, expired, signed with another key or algorithm, or not for us."""


@dataclass(frozen=True, slots=True)
class HashingParams:
    """argon2id cost parameters; production defaults follow the argon2-cffi recommendation."""

    time_cost: int = 3
    memory_cost: int = 65_536  # KiB
    parallelism: int = 4


class PasswordHasher:
    """argon2id hashing; every call runs in a worker thread so the event loop never blocks.

    At most `MAX_CONCURRENT_HASHES` run at once: each takes `memory_cost` KiB (64 MiB by
    default), so a burst of sign-ins must queue rather than multiply the process's memory.
    """

    def __init__(self, params: HashingParams) -> None:
        self._limiter: anyio.CapacityLimiter | None = None
        self._hasher = PasswordHash(
            (
                Argon2Hasher(
                    time_cost=params.time_cost,
                    memory_cost=params.memory_cost,
                    parallelism=params.parallelism,
                ),
            )
        )
        self._dummy_hash: str | None = None

    def _threads(self) -> anyio.CapacityLimiter:
        if self._limiter is None:  # created on first use, inside the running event loop
            self._limiter = anyio.CapacityLimiter(MAX_CONCURRENT_HASHES)
        return self._limiter

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hasher.hash, password, limiter=self._threads())

    async def verify(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        """(matches, new hash when the stored one uses outdated parameters)."""

        def _verify() -> tuple[bool, str | None]:
            try:
                return self._hasher.verify_and_update(password, password_hash)
            except PwdlibError:
                return False, None

        return await anyio.to_thread.run_sync(_verify, limiter=self._threads())

    async def burn(self, password: str) -> None:
        """Spend the time of one verification, so unknown accounts answer as slowly as known."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(_DUMMY_PASSWORD)
        await self.verify(password, self._dummy_hash)


@lru_cache(maxsize=8)
def password_hasher(params: HashingParams) -> PasswordHasher:
    return PasswordHasher(params)


def encode_jwt(
    claims: Mapping[str, Any],
    *,
    key: str,
    issuer: str,
    audience: str,
    ttl: timedelta,
    now: datetime | None = None,
) -> str:
    """Sign `claims` with HS256, adding iss, aud, iat, exp and a random jti."""
    issued = now or datetime.now(UTC)
    payload: dict[str, Any] = {
        **claims,
        "iss": issuer,
        "aud": audience,
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "jti": claims.get("jti") or uuid.uuid4().hex,
    }
    return jwt.encode(payload, key, algorithm=JWT_ALGORITHM)


def decode_jwt(token: str, *, key: str, issuer: str, audience: str) -> dict[str, Any]:
    """Verify signature, algorithm (HS256 only: `none` and every other one are refused),
    expiry, issuer and audience; raise InvalidToken otherwise.

    A token verified once is remembered (bounded, keyed by the token and everything it was
    checked against), so a client's repeated requests skip the signature and claim checks;
    expiry is checked again on every call."""
    claims = _verified_claims(token, key, issuer, audience)
    now = time.time()
    if claims["exp"] <= now:
        raise InvalidToken("Signature has expired")
    if claims["iat"] > now:
        raise InvalidToken("The token is not yet valid (iat)")
    return dict(claims)


@lru_cache(maxsize=4096)
def _verified_claims(token: str, key: str, issuer: str, audience: str) -> Mapping[str, Any]:
    """Only verified tokens are cached: a failure raises, and exceptions are not cached."""
    try:
        # `algorithms` pins HS256: a token whose header names `none` or any other algorithm
        # is refused before its signature is even looked at.
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[JWT_ALGORITHM],
            issuer=issuer,
            audience=audience,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.PyJWTError as error:
        raise InvalidToken(str(error)) from None
    return MappingProxyType(claims)


def new_opaque_token() -> str:
    """A random, URL-safe token with 256 bits of entropy."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which an opaque token is stored and looked up."""
    return hashlib.sha256(token.encode()).hexdigest()
