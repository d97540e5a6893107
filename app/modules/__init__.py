"""Feature modules: each sub-package is discovered by `app.core.modules`, mounted at /api/v1."""
