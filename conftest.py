"""Suite-wide pytest fixtures."""

import pytest


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory):
    """Keep the SQLite test database in a file, not in memory.

    End-to-end tests start django-q2 worker processes that must open the same database.
    """
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})
        database["TEST"]["NAME"] = str(tmp_path_factory.mktemp("database") / "test.sqlite3")


@pytest.fixture(autouse=True)
def empty_redis():
    """Start each test with an empty Redis when the suite runs on it (REDIS_URL set).

    The database is rolled back between tests, but Redis keeps queued tasks and the
    capture throttle's counters, which would leak from one test into the next.
    """
    from django.conf import settings

    if settings.REDIS_URL:
        from django.core.cache import cache

        cache.clear()  # FLUSHDB: the task queue and the cache share one Redis database.
    yield
