"""The auth module's router: its own endpoints, two-factor sign-in and social sign-in."""

from __future__ import annotations

from fastapi import APIRouter

from app.modules.auth.routes import social, two_factor, v1

router = APIRouter()
router.include_router(v1.router)
router.include_router(two_factor.router, prefix="/2fa", tags=["two-factor"])
router.include_router(social.router, prefix="/social", tags=["social sign-in"])
