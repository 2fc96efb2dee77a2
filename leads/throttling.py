"""The capture throttle: how many leads one member may post per period.

DRF's own throttles keep a list of request times in the cache and write it back after
each request, so two web processes that read it at once both let a request through. This
one counts with the cache's atomic `add` and `incr` instead, so with a shared cache
(Redis) the rate applies across every web process.

It counts in windows aligned to the clock (each minute for "120/min") and weighs the
previous window's count by the part of that window still within one period of now (a
sliding window counter). A burst at the end of one window therefore also counts early in
the next one. The weighting assumes the previous window's captures were spread evenly, so
over one rolling period a member who bunches captures at window ends can still get up to
twice the rate through, though not in one burst.
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
    captures. Captures above the rate get 429 with Retry-After, which is at most one
    period and one second.
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
        # The part of the current window that has passed, from 0 up to 1.
        elapsed = (now % self.duration) / self.duration
        try:
            # add() creates the counter only if it is missing; incr() is atomic.
            # Counters live two periods, so the next window can still read this one.
            self.cache.add(window_key, 0, timeout=2 * self.duration + 1)
            count = self.cache.incr(window_key)
            previous = self.cache.get(f"{key}:{window - 1}", 0)
        except ValueError:
            # The counter expired between add() and incr(): this is the first capture.
            return True
        except Exception as error:  # The cache backend's own errors (redis, memcached).
            self._warn_cache_unreachable(error)
            return True

        if math.floor(previous * (1 - elapsed)) + count <= self.num_requests:
            return True
        try:
            # A rejected capture must not count against the next ones.
            self.cache.decr(window_key)
        except Exception:  # noqa: BLE001 - the count then errs on the strict side.
            pass
        self.wait_seconds = self._seconds_until_allowed(previous, count - 1, elapsed)
        return False

    def _seconds_until_allowed(self, previous, current, elapsed):
        """Return the whole seconds until one more capture fits the rate, at least 1.

        `previous` and `current` are the counts of the previous and current windows, and
        `elapsed` the part of the current window that has passed. A capture fits once
        the previous window's weighted count drops below the room the rate leaves.
        """
        rate = self.num_requests
        if rate == 0:
            # A rate of 0 lets no capture through.
            return self.duration
        if current < rate:
            if not previous:
                return 1
            # Within this window, once previous * (1 - elapsed) < rate - current.
            fits_at = 1 - (rate - current) / previous
            seconds = (fits_at - elapsed) * self.duration
        else:
            # In the next window, where this window's count weighs as the previous one.
            fits_at = 1 - rate / current
            seconds = (1 - elapsed + fits_at) * self.duration
        # The capture fits only after that moment, hence floor + 1. Rounding first keeps
        # float error from moving a whole number of seconds.
        return max(1, math.floor(round(seconds, 6)) + 1)

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
