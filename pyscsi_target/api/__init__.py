"""The FreeNAS-style v1.0 management REST API (Quart-Trio); it sees only pyscsi_target.model.

`create_app(control, password=..., extent_roots=[...], device_root="/dev", version=...)` builds the
application that server/ serves with hypercorn; `load_api_password` reads or creates the password.
The behaviour is documented in docs/api.md and served as OpenAPI at /api/v1.0/openapi.json.
"""

from .app import create_app
from .auth import load_api_password

__all__ = ["create_app", "load_api_password"]
