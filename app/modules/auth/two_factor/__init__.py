"""Two-factor sign-in (TOTP, RFC 6238) with single-use recovery codes: enrolment, the second
step of a sign-in, and AUTH_ADMIN_2FA_REQUIRED. Its routes are `routes/two_factor.py`."""
