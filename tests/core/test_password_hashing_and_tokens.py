"""Password hashing and JWTs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
import time_machine

from app.core.security import (
    HashingParams,
    InvalidToken,
    decode_jwt,
    encode_jwt,
    hash_token,
    new_opaque_token,
    password_hasher,
)

CHEAP = HashingParams(time_cost=1, memory_cost=1024, parallelism=1)
KEY = "k" * 64


async def test_argon2id_hash_verify_and_upgrade() -> None:
    hasher = password_hasher(CHEAP)
    hashed = await hasher.hash("s3cret-passphrase")
    assert hashed.startswith("$argon2id$")
    assert await hasher.verify("s3cret-passphrase", hashed) == (True, None)
    assert (await hasher.verify("wrong", hashed))[0] is False
    assert await hasher.verify("anything", "not-a-hash") == (False, None)
    stronger = password_hasher(HashingParams(time_cost=2, memory_cost=1024, parallelism=1))
    ok, upgraded = await stronger.verify("s3cret-passphrase", hashed)
    assert ok
    assert upgraded is not None
    assert "t=2" in upgraded
    await hasher.burn("whatever")  # no error, takes one verification's time


def test_jwt_round_trip_and_rejections() -> None:
    token = encode_jwt(
        {"sub": "42"}, key=KEY, issuer="iss", audience="aud", ttl=timedelta(minutes=1)
    )
    claims = decode_jwt(token, key=KEY, issuer="iss", audience="aud")
    assert claims["sub"] == "42"
    assert claims["jti"]
    with pytest.raises(InvalidToken):
        decode_jwt(token, key=KEY, issuer="other", audience="aud")
    with pytest.raises(InvalidToken):
        decode_jwt(token, key=KEY, issuer="iss", audience="other")
    with pytest.raises(InvalidToken):
        decode_jwt(token, key="x" * 64, issuer="iss", audience="aud")
    past = datetime.now(UTC) - timedelta(hours=1)
    expired = encode_jwt(
        {"sub": "42"}, key=KEY, issuer="iss", audience="aud", ttl=timedelta(minutes=1), now=past
    )
    with pytest.raises(InvalidToken):
        decode_jwt(expired, key=KEY, issuer="iss", audience="aud")
    unsigned = jwt.encode({"sub": "42", "iss": "iss", "aud": "aud"}, "", algorithm="none")
    with pytest.raises(InvalidToken):
        decode_jwt(unsigned, key=KEY, issuer="iss", audience="aud")
    no_jti = jwt.encode(
        {"sub": "1", "iss": "iss", "aud": "aud", "iat": 1, "exp": 2**40}, KEY, algorithm="HS256"
    )
    with pytest.raises(InvalidToken):
        decode_jwt(no_jti, key=KEY, issuer="iss", audience="aud")


def test_opaque_tokens_are_random_and_hashed() -> None:
    first, second = new_opaque_token(), new_opaque_token()
    assert first != second
    assert len(first) >= 43
    assert hash_token(first) == hash_token(first)
    assert len(hash_token(first)) == 64


def test_a_verified_token_is_remembered_but_its_expiry_and_signature_still_count() -> None:
    issued = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    token = encode_jwt(
        {"sub": "7"}, key=KEY, issuer="iss", audience="aud", ttl=timedelta(minutes=15), now=issued
    )
    with time_machine.travel(issued + timedelta(minutes=1), tick=False):
        assert decode_jwt(token, key=KEY, issuer="iss", audience="aud")["sub"] == "7"
        # The second check is answered from memory: the same claims, a copy the caller owns.
        claims = decode_jwt(token, key=KEY, issuer="iss", audience="aud")
        claims["sub"] = "changed"
        assert decode_jwt(token, key=KEY, issuer="iss", audience="aud")["sub"] == "7"
        # Remembered for this key, issuer and audience only.
        with pytest.raises(InvalidToken):
            decode_jwt(token, key="x" * 64, issuer="iss", audience="aud")
        with pytest.raises(InvalidToken):
            decode_jwt(token, key=KEY, issuer="iss", audience="other")
        # A token that differs from the remembered one in any byte is verified afresh.
        header, payload, signature = token.split(".")
        forged = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
        with pytest.raises(InvalidToken):
            decode_jwt(forged, key=KEY, issuer="iss", audience="aud")
    # Expiry is checked on every call, remembered or not...
    with (
        time_machine.travel(issued + timedelta(minutes=15), tick=False),
        pytest.raises(InvalidToken, match="expired"),
    ):
        decode_jwt(token, key=KEY, issuer="iss", audience="aud")
    # ...and so is a clock that now reads before the token was issued.
    with (
        time_machine.travel(issued - timedelta(minutes=1), tick=False),
        pytest.raises(InvalidToken, match="not yet valid"),
    ):
        decode_jwt(token, key=KEY, issuer="iss", audience="aud")
