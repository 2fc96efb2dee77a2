"""The capture throttle: how many leads one member may post per period.

DRF's own throttles keep a list of request times in the cache and write it back after
each request, so two web processes that read it at once both let a request through. This
one counts with the cache's atomic `add` and `incr` instead, so with a shared cache
(Redis) the rate applies across every web process. It counts in fixed windows aligned to
the clock (each minute for "120/min"), so a burst that straddles two windows can reach
twice the rate within one period.
"""

import logging
import math
import time

from rest_framework.settings import api_settings
from rest_framework.throttling import UserRateThrottle

logger = logging.getLogger(__name__)

# Seconds between two warnings that the cache cannot be reached.
CACHE_WARNING_INTERVAL = 60


class CaptureRateThrottle(UserRateThrottle):
    """Limit the captures of each member to the "capture" rate in DEFAULT_THROTTLE_RATES.

    When the cache cannot be reached (Redis is down), captures go through without a
    limit and a warning is logged, because a lost lead costs more than a few extra
    captures. Captures above the rate get 429 with Retry-After.
    """

    scope = "capture"
    _last_cache_warning = 0.0
    _suppressed_cache_warnings = 0

    def get_rate(self):
        # Read at request time rather than from DRF's class attribute, which is bound
        # at import, so that a changed setting applies.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view):
        self.wait_seconds = None
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True

        now = self.timer()
        window = int(now // self.duration)
        window_key = f"{key}:{window}"
        try:
            # add() creates the counter only if it is missing; incr() is atomic.
            self.cache.add(window_key, 0, timeout=self.duration + 1)
            count = self.cache.incr(window_key)
        except ValueError:
            # The counter expired between add() and incr(): this is the first capture.
            return True
        except Exception as error:  # The cache backend's own errors (redis, memcached).
            self._warn_cache_unreachable(error)
            return True

        if count <= self.num_requests:
            return True
        try:
            # A rejected capture must not count against the next ones.
            self.cache.decr(window_key)
        except Exception:  # noqa: BLE001 - the count then errs on the strict side.
            pass
        self.wait_seconds = max(1, math.ceil((window + 1) * self.duration - now))
        return False

    def wait(self):
        return self.wait_seconds

    @classmethod
    def _warn_cache_unreachable(cls, error):
        now = time.monotonic()
        if now - cls._last_cache_warning < CACHE_WARNING_INTERVAL:
            cls._suppressed_cache_warnings += 1
            return
        logger.warning("The capture throttle cannot reach the cache (%s: %s); captures go "
                       "through without a limit until it is back (%d warnings suppressed)",
                       error.__class__.__name__, error, cls._suppressed_cache_warnings)
        cls._last_cache_warning = now
        cls._suppressed_cache_warnings = 0
