"""Fault injection, so that tests and smoke runs can exercise a client's retry paths.

Faults apply to Web API requests only, never to the sign-in endpoints, with one
exception that has to be set on purpose: `access_token_lifetime` shortens the life of
new access tokens. A $batch is one request here, so a fault hits the whole batch and
never a single part of it. Each Web API request draws its faults from one random
generator with a fixed seed, so a run that sends the same requests in the same order
meets the same faults.

    running = start_sandbox(tmp_path, fault_error_rate=0.1, fault_seed=7)
    running.faults.update(drop_rate=0.5)      # change rates while the server runs
    running.faults.throttle_next(3)           # the next 3 requests get 429
    running.faults.reset()                    # no faults from here on
"""

import logging
import random
import threading

logger = logging.getLogger(__name__)

# Decisions of Faults.decide().
THROTTLE = "throttle"
TRANSIENT_ERROR = "transient_error"
DROP_RESPONSE = "drop_response"


class Faults:
    """Fault settings of one running sandbox, changeable at runtime.

    error_rate             share of Web API requests (0 to 1) that return 503 before
                           the operation runs, so nothing is written
    drop_rate              share of Web API requests that run, commit and then lose
                           their response: the server closes the connection unanswered
    throttle_burst         number of next Web API requests that return 429
    retry_after            Retry-After seconds of those 429 responses
    access_token_lifetime  seconds that new access tokens work, while the token
                           response still reports the normal expires_in (None: normal)
    seed                   seed of the random generator behind the two rates
    """

    _DEFAULTS = {
        "error_rate": 0.0,
        "drop_rate": 0.0,
        "throttle_burst": 0,
        "retry_after": 1,
        "access_token_lifetime": None,
        "seed": 0,
    }

    def __init__(self, **settings):
        self._lock = threading.Lock()
        self.error_rate = 0.0
        self.drop_rate = 0.0
        self.throttle_burst = 0
        self.retry_after = 1
        self.access_token_lifetime = None
        self.seed = 0
        self._random = random.Random(0)
        self.update(**settings)

    def update(self, **changes):
        """Change fault settings by name. Changing `seed` restarts the random sequence."""
        for name, value in changes.items():
            _check(name, value)
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, value)
            if "seed" in changes:
                self._random = random.Random(self.seed)
        if changes:
            logger.info("Fault injection settings changed: %s", changes)

    def reset(self):
        """Turn every fault off and restart the random sequence from the current seed."""
        defaults = dict(self._DEFAULTS, seed=self.seed)
        self.update(**defaults)

    def throttle_next(self, count, retry_after=None):
        """Make the next `count` Web API requests return 429 with Retry-After."""
        changes = {"throttle_burst": count}
        if retry_after is not None:
            changes["retry_after"] = retry_after
        self.update(**changes)

    def as_dict(self):
        with self._lock:
            return {name: getattr(self, name) for name in self._DEFAULTS}

    def decide(self):
        """Return the fault for the next Web API request (a constant above) or None."""
        with self._lock:
            if self.throttle_burst > 0:
                self.throttle_burst -= 1
                return THROTTLE
            # Both numbers are drawn for every request, so changing one rate does not
            # shift which requests the other one hits.
            error_draw = self._random.random()
            drop_draw = self._random.random()
        if error_draw < self.error_rate:
            return TRANSIENT_ERROR
        if drop_draw < self.drop_rate:
            return DROP_RESPONSE
        return None


def _check(name, value):
    if name not in Faults._DEFAULTS:
        raise ValueError(
            f"Unknown fault setting {name!r}. Use one of: {', '.join(Faults._DEFAULTS)}."
        )
    if name in ("error_rate", "drop_rate"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"The fault setting {name} must be a number from 0 to 1, not {value!r}.")
    elif name == "access_token_lifetime":
        if value is not None and (not isinstance(value, int) or value < 0):
            raise ValueError(
                f"The fault setting {name} must be None or whole seconds of at least 0, "
                f"not {value!r}."
            )
    elif name == "seed":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"The fault setting seed must be a whole number, not {value!r}.")
    elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"The fault setting {name} must be a whole number of at least 0, "
                         f"not {value!r}.")
