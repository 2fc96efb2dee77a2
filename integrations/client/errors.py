"""Errors raised by the Dataverse client.

Callers branch on the class, never on `requests` exceptions or raw status codes. Each
class shows whether a retry can help and what the user has to do.
"""

import re


class DataverseError(Exception):
    """A failed Dataverse Web API call, with the HTTP status and Dataverse's error code."""

    retryable = False

    def __init__(self, message, *, status=None, code="", request_id=""):
        super().__init__(message)
        self.message = message
        self.status = status
        # Dataverse's hexadecimal error code, for example "0x80044331"; may be empty.
        self.code = code
        self.request_id = request_id

    def __str__(self):
        parts = [self.message]
        if self.status:
            parts.append(f"(HTTP {self.status}" + (f", code {self.code})" if self.code else ")"))
        return " ".join(parts)


class AuthorizationRequired(DataverseError):
    """The stored sign-in no longer works (expired or revoked refresh token, wrong app
    secret, or a 401 after one renewal). An admin has to reconnect; retrying cannot help."""


class PermissionDenied(DataverseError):
    """The integration user lacks a Dynamics privilege (HTTP 403)."""


class NotFound(DataverseError):
    """The record, table or column does not exist (HTTP 404)."""


class ValidationFailed(DataverseError):
    """Dataverse rejected the request body or query (HTTP 400): fix the data or mapping."""


class PreconditionFailed(DataverseError):
    """An If-Match or If-None-Match condition failed, or the record already exists (412)."""


class DuplicateDetected(DataverseError):
    """The org's duplicate detection rules blocked the write (code 0x80040333)."""


class Throttled(DataverseError):
    """A service protection limit was hit (HTTP 429). Wait `retry_after` seconds."""

    retryable = True

    def __init__(self, message, *, retry_after=0.0, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class TransientError(DataverseError):
    """A time-out, a dropped connection or a 5xx response: the same call may succeed later."""

    retryable = True


# Dataverse error messages that name one offending column or navigation property.
_COLUMN_PATTERNS = (
    re.compile(r"Invalid property '([^']+)' was found"),
    re.compile(r"Could not find a property named '([^']+)'"),
    re.compile(r"The length of the '([^']+)' attribute"),
    re.compile(r"An undeclared property '([^']+)'"),
    re.compile(r"The value .* of '([^']+)' on record of type '[^']+' is outside the valid range"),
)


def column_in_message(message):
    """Return the column or navigation property that a Dataverse error names, or None."""
    for pattern in _COLUMN_PATTERNS:
        match = pattern.search(message or "")
        if match:
            return match.group(1)
    return None
