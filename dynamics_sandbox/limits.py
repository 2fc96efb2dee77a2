"""Service protection limits per user: requests, execution time and concurrency.

Dataverse allows each user 6000 requests and 1,200,000 ms of combined execution time
per sliding 300-second window, and 52 concurrent requests, and returns 429 with
Retry-After beyond that. A $batch counts as one request, but each of its operations
adds its execution time. Tests lower the limits through SandboxSettings (or
SANDBOX_RATE_LIMIT_REQUESTS, SANDBOX_RATE_LIMIT_EXECUTION_MS and
SANDBOX_RATE_LIMIT_CONCURRENT).
"""

import math
import threading
import time
from collections import defaultdict, deque

from .records import DataverseError

WINDOW_SECONDS = 300


class ServiceProtection:
    """Count requests per user and reject those over the limits with a 429."""

    def __init__(self, max_requests, max_concurrent, max_execution_ms=1_200_000):
        self.max_requests = max_requests
        self.max_concurrent = max_concurrent
        self.max_execution_ms = max_execution_ms
        self._lock = threading.Lock()
        self._recent = defaultdict(deque)  # user id -> monotonic times of requests
        # user id -> (monotonic end time, milliseconds) of each operation
        self._executions = defaultdict(deque)
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
            executions = self._prune_executions(user_id, now)
            used_ms = sum(milliseconds for _, milliseconds in executions)
            if used_ms >= self.max_execution_ms:
                raise DataverseError(
                    429, "0x80072321",
                    "Combined execution time of incoming requests exceeded limit of "
                    f"{self.max_execution_ms:,}  milliseconds over time window of "
                    f"{WINDOW_SECONDS} seconds. Decrease number of concurrent requests or "
                    "reduce the duration of requests and try again later.",
                    {"Retry-After": str(self._execution_retry_after(executions, used_ms, now))},
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

    def record_execution(self, user_id, duration_ms):
        """Add the execution time of one operation to the user's window."""
        with self._lock:
            self._executions[user_id].append((time.monotonic(), duration_ms))

    def execution_ms_remaining(self, user_id):
        """Return the execution time in milliseconds that the user has left in the window."""
        with self._lock:
            executions = self._prune_executions(user_id, time.monotonic())
            used_ms = sum(milliseconds for _, milliseconds in executions)
        return max(0.0, self.max_execution_ms - used_ms)

    def _prune_executions(self, user_id, now):
        executions = self._executions[user_id]
        while executions and executions[0][0] <= now - WINDOW_SECONDS:
            executions.popleft()
        return executions

    def _execution_retry_after(self, executions, used_ms, now):
        """Return the seconds until enough old operations leave the window."""
        for ended, milliseconds in executions:
            used_ms -= milliseconds
            if used_ms < self.max_execution_ms:
                return max(1, math.ceil(ended + WINDOW_SECONDS - now))
        return WINDOW_SECONDS
