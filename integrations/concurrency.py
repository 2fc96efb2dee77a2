"""A cap on concurrent Dataverse requests per org, shared by every worker process.

Dataverse rejects a user's 53rd concurrent request with 429 (code 0x80072326). Web and
worker processes on any number of machines share the cap through the database. A
request takes one of DYNAMICS_MAX_CONCURRENT_REQUESTS slot rows of its org host. A slot
whose holder died is taken over once its lease has run out.
"""

import contextlib
import logging
import random
import time
import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from .client import errors
from .models import RequestSlot

logger = logging.getLogger(__name__)


class OrgRequestLimiter:
    """Hands out request slots of one org; use `with limiter.slot(): send()`."""

    def __init__(self, org_url, max_concurrent=None, lease_seconds=None, wait_seconds=None):
        self.org = (urlsplit(org_url).netloc or org_url).lower()
        self.max_concurrent = max_concurrent or settings.DYNAMICS_MAX_CONCURRENT_REQUESTS
        # A slot is held at most this long: longer than any request's read timeout.
        self.lease_seconds = lease_seconds or settings.DYNAMICS_READ_TIMEOUT * 2 + 10
        self.wait_seconds = wait_seconds if wait_seconds is not None else 60
        self._ready = False

    def _ensure_rows(self):
        if self._ready:
            return
        existing = set(RequestSlot.objects.filter(org=self.org)
                       .values_list("number", flat=True))
        for number in range(self.max_concurrent):
            if number not in existing:
                try:
                    with transaction.atomic():
                        RequestSlot.objects.create(org=self.org, number=number)
                except IntegrityError:
                    pass  # Another process created it first.
        self._ready = True

    def _try_acquire(self, holder):
        now = timezone.now()
        free = Q(holder="") | Q(expires_at__lt=now)
        numbers = list(range(self.max_concurrent))
        random.shuffle(numbers)
        for number in numbers:
            # One UPDATE that re-checks "free" on the row it changes, so two processes
            # can never both take the same slot, on SQLite or PostgreSQL.
            updated_rows = RequestSlot.objects.filter(free, org=self.org, number=number).update(
                holder=holder, expires_at=now + timezone.timedelta(seconds=self.lease_seconds))
            if updated_rows:
                return number
        return None

    @contextlib.contextmanager
    def slot(self):
        """Hold one request slot of the org for the duration of the block.

        Raises errors.Throttled when no slot frees up within `wait_seconds`.
        """
        self._ensure_rows()
        holder = uuid.uuid4().hex
        deadline = time.monotonic() + self.wait_seconds
        delay = 0.02
        number = self._try_acquire(holder)
        while number is None:
            if time.monotonic() >= deadline:
                logger.warning("No free request slot for org %s within %s s", self.org,
                               self.wait_seconds)
                raise errors.Throttled(
                    f"All {self.max_concurrent} concurrent request slots for {self.org} "
                    f"stayed busy for {self.wait_seconds} s.", retry_after=5)
            time.sleep(delay)
            delay = min(0.5, delay * 2)
            number = self._try_acquire(holder)
        try:
            yield number
        finally:
            RequestSlot.objects.filter(org=self.org, number=number, holder=holder).update(
                holder="", expires_at=None)
