"""Service protection limits: requests per user in a sliding window, and concurrency.

Dataverse allows each user 6000 requests per 300 seconds and 52 concurrent requests,
and returns 429 with Retry-After beyond that. Tests lower the limits through
SandboxSettings (or SANDBOX_RATE_LIMIT_REQUESTS and SANDBOX_RATE_LIMIT_CONCURRENT).
"""

import math
import threading
import time
from collections import defaultdict, deque

from .records import DataverseError

WINDOW_SECONDS = 300


class ServiceProtection:
    """Count requests per user and reject those over the limits with a 429."""

    def __init__(self, max_requests, max_concurrent):
        self.max_requests = max_requests
        self.max_concurrent = max_concurrent
        self._lock = threading.Lock()
        self._recent = defaultdict(deque)  # user id -> monotonic times of requests
        self._active = defaultdict(int)

    def enter(self, user_id):
        """Record the start of a request. Raise a 429 DataverseError over a limit.

        Return the number of requests the user has left in the window. A caller
        that gets no error must call leave(user_id) when the request ends.
        """
        now = time.monotonic()
        with self._lock:
            recent = self._recent[user_id]
            while recent and recent[0] <= now - WINDOW_SECONDS:
                recent.popleft()
            if len(recent) >= self.max_requests:
                retry_after = max(1, math.ceil(recent[0] + WINDOW_SECONDS - now))
                raise DataverseError(
                    429, "0x80072322",
                    f"Number of requests exceeded the limit of {self.max_requests} over time "
                    f"window of {WINDOW_SECONDS} seconds.",
                    {"Retry-After": str(retry_after)},
                )
            if self._active[user_id] >= self.max_concurrent:
                raise DataverseError(
                    429, "0x80072326",
                    f"Number of concurrent requests exceeded the limit of {self.max_concurrent}.",
                    {"Retry-After": "1"},
                )
            recent.append(now)
            self._active[user_id] += 1
            return self.max_requests - len(recent)

    def leave(self, user_id):
        with self._lock:
            self._active[user_id] -= 1
