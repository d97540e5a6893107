"""Social sign-in (OAuth 2.0 / OpenID Connect with authlib): Google, GitHub and any OIDC
issuer by its discovery URL. Its routes are `routes/social.py`."""
