"""API keys for machine clients: named, expiring, scoped, shown once, stored hashed under a
lookup prefix, revocable, last use recorded. A key stands for its owner with its own scopes
(core's `Principal.scopes`); the auth module's authenticator recognises one by its prefix.

Its model registers with the auth module's router (routes -> service -> models)."""
