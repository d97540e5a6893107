"""Error reports to Sentry: only with SENTRY_DSN, with the request and account ids, and
without credentials, cookies, tokens or passwords."""

from __future__ import annotations

import contextvars
from typing import Any

from app.core.config import Environment, Settings
from app.core.request_context import set_request_id, set_user_id
from app.core.sentry import FILTERED, scrub, sentry_options


def _event() -> dict[str, Any]:
    return {
        "request": {
            "url": "https://api.example.com/api/v1/auth/reset-password",
            "method": "POST",
            "query_string": "page=2&token=abc123&access_token=xyz&sort=name",
            "headers": {
                "Authorization": "Bearer eyJ.secret",
                "Cookie": "session=s3cr3t",
                "X-Request-ID": "req-12345678",
                "User-Agent": "pytest",
            },
            "cookies": {"session": "s3cr3t"},
            "data": {"email": "a@example.com", "password": "hunter2", "new_password": "x"},
        },
        "extra": {"refresh_token": "r", "nested": {"client_secret": "c", "count": 3}},
        "breadcrumbs": {"values": [{"data": {"Set-Cookie": "a=b", "path": "/x"}}]},
    }


def test_the_scrubber_removes_credentials_cookies_tokens_and_passwords() -> None:
    event = scrub(_event(), {})
    request = event["request"]
    assert "cookies" not in request
    assert request["headers"]["Authorization"] == FILTERED
    assert request["headers"]["Cookie"] == FILTERED
    assert request["headers"]["User-Agent"] == "pytest"
    assert request["data"] == {
        "email": "a@example.com",
        "password": FILTERED,
        "new_password": FILTERED,
    }
    assert request["query_string"] == f"page=2&token={FILTERED}&access_token={FILTERED}&sort=name"
    assert event["extra"] == {
        "refresh_token": FILTERED,
        "nested": {"client_secret": FILTERED, "count": 3},
    }
    assert event["breadcrumbs"]["values"][0]["data"] == {"Set-Cookie": FILTERED, "path": "/x"}
    text = repr(event)
    for secret in ("eyJ.secret", "s3cr3t", "hunter2", "abc123", "xyz"):
        assert secret not in text


def test_headers_as_pairs_are_scrubbed_too() -> None:
    event = scrub({"request": {"headers": [["authorization", "Bearer t"], ["accept", "*/*"]]}})
    assert event["request"]["headers"] == [["authorization", FILTERED], ["accept", "*/*"]]


def test_a_report_names_the_request_and_the_account() -> None:
    def report() -> dict[str, Any]:
        set_request_id("req-abcdef12")
        set_user_id("7f1c0d6e-0000-4000-8000-000000000001")
        return scrub({"message": "boom"})

    event = contextvars.copy_context().run(report)  # the ids stay in this test
    assert event["tags"]["request_id"] == "req-abcdef12"
    assert event["user"] == {"id": "7f1c0d6e-0000-4000-8000-000000000001"}


def test_sentry_is_set_up_only_with_a_dsn() -> None:
    assert sentry_options(Settings(_env_file=None)) is None
    options = sentry_options(
        Settings(
            _env_file=None, sentry_dsn="https://key@sentry.example.com/1", app_env=Environment.TEST
        )
    )
    assert options is not None
    assert options["before_send"] is scrub
    assert options["send_default_pii"] is False
    assert options["environment"] == "test"
