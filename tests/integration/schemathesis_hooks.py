"""Schemathesis hooks for the run from outside (`SCHEMATHESIS_HOOKS`, test_serve.py).

Generated bodies get a real IANA time zone: a random string is always refused, and stateful scenarios would
then never get past creating a user or a team calendar to what follows from them.
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def map_body(context: schemathesis.HookContext, body: Any) -> Any:
    if isinstance(body, dict) and isinstance(body.get("timezone"), str):
        return body | {"timezone": "Europe/Paris"}
    return body
