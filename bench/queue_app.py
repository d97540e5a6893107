"""The template's app with the benchmark's probe module added (create_app's module_packages),
served by uvicorn as `app serve` serves it."""

from app.core.modules import DEFAULT_PACKAGES
from app.main import create_app

PACKAGES = (*DEFAULT_PACKAGES, "bench.probe_modules")
app = create_app(module_packages=PACKAGES)
