"""Fill the users table fast, inside PostgreSQL (generate_series), not through the API: the
data-scale benchmark's million users, and the list tests' few thousand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

# One statement: every row made by the server. One user in ADMIN_EVERY is an administrator,
# one in INACTIVE_EVERY inactive; created_at one second apart, the newest a minute ago.
SEED_USERS_SQL = """
INSERT INTO users (id, email, username, password_hash, is_active, is_verified, role,
                   created_at, updated_at, version)
SELECT gen_random_uuid(), 'seed' || g || '@example.com', 'seed' || g, %(password_hash)s,
       g %% %(inactive_every)s <> 0, g %% 3 <> 0,
       CASE WHEN g %% %(admin_every)s = 0 THEN 'admin' ELSE 'user' END,
       %(start)s::timestamptz + g * interval '1 second',
       %(start)s::timestamptz + g * interval '1 second', 1
FROM generate_series(1, %(count)s) AS g
"""
ADMIN_EVERY = 100
INACTIVE_EVERY = 50


def seed_users_params(count: int, password_hash: str) -> dict[str, Any]:
    start = datetime.now(UTC) - timedelta(seconds=count + 60)
    return {
        "count": count,
        "password_hash": password_hash,
        "start": start,
        "admin_every": ADMIN_EVERY,
        "inactive_every": INACTIVE_EVERY,
    }


def newest_fraction_since(count: int, fraction: float, params: dict[str, Any]) -> datetime:
    """The created_at from which the newest `fraction` of `count` seeded users were made."""
    start: datetime = params["start"]
    return start + timedelta(seconds=int(count * (1 - fraction)))
