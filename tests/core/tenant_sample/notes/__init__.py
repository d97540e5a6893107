"""A tenant-owned sample module under tests/, built as `app new-module notes 'title:str^'
--tenant` builds one: proves the tenancy layers of core (`app.core.tenancy`)."""

from app.core.modules import ModuleSpec
from tests.core.tenant_sample.notes.routes import router

module = ModuleSpec(name="notes", router=router)
