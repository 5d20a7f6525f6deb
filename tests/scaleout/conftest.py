"""The scale-out tests need PostgreSQL, and HAProxy, PgBouncer and redis-server (Debian
packages; ``make tools`` installs them as root). Without them they skip; under CI
(``BEEM_REQUIRE_SERVICES=1``) a skip is a failure."""

import pytest
from django.db import connection

from bench.scaleout import tools_missing


@pytest.fixture
def scaleout_services(transactional_db):
    # The web groups, workers and PgBouncer are other processes: they must see committed
    # rows, hence transactional_db.
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: set DATABASE_URL=postgres://...")
    missing = tools_missing()
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian packages; `make tools` as root)")
