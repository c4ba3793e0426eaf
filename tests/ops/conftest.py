"""The served API of tests/web (SQLite and PostgreSQL, a fake calendar account behind it), for reading /metrics."""

from tests.web.conftest import accounts as accounts  # noqa: F401  (fixtures, re-exported)
from tests.web.conftest import api as api  # noqa: F401
