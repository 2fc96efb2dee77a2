"""The one HTTP client for the Dataverse Web API of a Dynamics 365 org.

Every request goes through `DataverseClient.request`. It sets the OData headers and an
explicit (connect, read) timeout, and trusts only the configured CA bundle. It renews the
token once on a 401 and retries time-outs, 5xx responses and 429s with backoff. It counts
requests and turns every failure into an error from `integrations.client.errors`.
"""

import contextlib
import json
import logging
import random
import re
import time

import requests

from . import batch, errors
from .odata import query_string

logger = logging.getLogger(__name__)

API_PATH = "/api/data/v9.2/"

# OData-EntityId: https://org.crm.dynamics.com/api/data/v9.2/leads(00000000-...)
_ENTITY_ID_PATTERN = re.compile(r"\(([0-9a-fA-F-]{36})\)\s*$")


class DataverseSession(requests.Session):
    """A requests.Session with a default timeout that ignores proxy and CA settings
    from the environment.

    requests lets REQUESTS_CA_BUNDLE override a session's `verify`, so the trust decision
    would depend on the machine. Turning `trust_env` off keeps it in our settings. MSAL
    sends its own requests through this session without a timeout, hence the default.
    """

    def __init__(self, ca_bundle=None, timeout=(5.0, 30.0)):
        super().__init__()
        self.trust_env = False
        self.verify = ca_bundle or True
        self.default_timeout = timeout

    def request(self, method, url, *args, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)


class DataverseClient:
    """Calls the Web API of one org as the user whose tokens `token_provider` returns.

    `token_provider(force_refresh=False)` returns an access token or raises
    `errors.AuthorizationRequired`.
    """

    def __init__(
        self,
        org_url,
        token_provider,
        *,
        ca_bundle=None,
        connect_timeout=5.0,
        read_timeout=30.0,
        max_retries=3,
        max_backoff=20.0,
        session=None,
        limiter=None,
    ):
        self.org_url = org_url.rstrip("/")
        self.api_url = self.org_url + API_PATH
        self.token_provider = token_provider
        self.timeout = (connect_timeout, read_timeout)
        self.max_retries = max_retries
        # Upper bound in seconds for one wait between retries, including a Retry-After.
        self.max_backoff = max_backoff
        self.session = session or DataverseSession(ca_bundle, self.timeout)
        # Optional cap on concurrent requests: an object whose slot() is a context
        # manager held around each HTTP request.
        self.limiter = limiter
        # HTTP requests sent, and Web API operations (one per request, or per batch part).
        self.request_count = 0
        self.operation_count = 0

    # -- Records -------------------------------------------------------------------

    def create(self, entity_set, body):
        """Create a record and return its id, read from the OData-EntityId header."""
        response = self.request("POST", entity_set, body=body)
        entity_id = response.headers.get("OData-EntityId", "")
        match = _ENTITY_ID_PATTERN.search(entity_id)
        if not match:
            raise errors.DataverseError(
                f"Dynamics created a {entity_set} record but sent no usable OData-EntityId "
                f"header (got {entity_id!r})."
            )
        return match.group(1).lower()

    def update(self, entity_set, record_id, body, *, if_match="*"):
        """Update an existing record. With If-Match "*" a missing record raises NotFound
        instead of being created."""
        headers = {"If-Match": if_match} if if_match else {}
        self.request("PATCH", f"{entity_set}({record_id})", body=body, headers=headers)

    def retrieve(self, entity_set, record_id, *, select=None):
        params = {"$select": ",".join(select) if select else None}
        return self.request("GET", f"{entity_set}({record_id})", params=params).json()

    def query(self, entity_set, *, filter=None, select=None, orderby=None, top=None,
              expand=None):
        """Return the rows that match, following @odata.nextLink over every page."""
        params = {
            "$select": ",".join(select) if select else None,
            "$filter": filter,
            "$orderby": orderby,
            "$top": top,
            "$expand": expand,
        }
        return self.all_rows(self.request("GET", entity_set, params=params).json())

    def all_rows(self, payload):
        """Return the rows of a query response and of every page its @odata.nextLink
        leads to."""
        rows = list(payload.get("value", []))
        next_link = payload.get("@odata.nextLink")
        while next_link:
            payload = self.request("GET", next_link).json()
            rows.extend(payload.get("value", []))
            next_link = payload.get("@odata.nextLink")
        return rows

    # -- Batches -------------------------------------------------------------------

    def batch(self, groups, *, continue_on_error=True):
        """Send Operations and ChangeSets in one $batch request; return their results.

        Returns one OperationResult per operation, in order. With `continue_on_error`
        every part runs, and a failed change set yields its failed request's result for
        each of its operations, because all of them rolled back. Without it, Dataverse
        stops at the first failure, and that failure is raised.
        """
        count = batch.operation_count(groups)
        if count > batch.MAX_BATCH_OPERATIONS:
            raise ValueError(f"A batch may contain at most {batch.MAX_BATCH_OPERATIONS} "
                             f"operations; this one has {count}.")
        content_type, body = batch.build_body(groups, API_PATH)
        headers = {"Content-Type": content_type}
        if continue_on_error:
            headers["Prefer"] = "odata.continue-on-error"
        response = self.request("POST", "$batch", raw_body=body, headers=headers)
        self.operation_count += count
        results = batch.parse_response(response.headers.get("Content-Type", ""),
                                       response.content)
        return _align(groups, results)

    # -- Users ---------------------------------------------------------------------

    def who_am_i(self):
        """Return {"UserId", "BusinessUnitId", "OrganizationId"} of the calling user."""
        return self.request("GET", "WhoAmI").json()

    def user_with_roles(self, user_id):
        """Return the systemuser row with its security roles under "roles"."""
        row = self.request(
            "GET",
            f"systemusers({user_id})",
            params={
                "$select": "systemuserid,fullname,internalemailaddress,domainname",
                "$expand": "systemuserroles_association($select=roleid,name)",
            },
        ).json()
        row["roles"] = [
            {"id": role.get("roleid"), "name": role.get("name")}
            for role in row.pop("systemuserroles_association", [])
        ]
        return row

    # -- Transport -----------------------------------------------------------------

    def request(self, method, path, *, params=None, body=None, headers=None, raw_body=None):
        """Send one Web API request, with token renewal and retries, and return the
        2xx response. `path` is relative to the API root or a full URL."""
        if "://" in path:
            # A full URL comes from the server (an @odata.nextLink). The bearer token goes
            # only to this org's API, so a link elsewhere is an error, not a request.
            if not path.startswith(self.api_url.rstrip("/") + "/"):
                raise errors.DataverseError(
                    f"Dynamics returned a link outside {self.api_url}: {path[:200]}. "
                    "The request was not sent; check the environment URL of the integration."
                )
            url = path
        else:
            url = self.api_url + path
        if params:
            encoded = query_string(params)
            if encoded:
                url = f"{url}?{encoded}"
        request_headers = {
            "Accept": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
        }
        data = raw_body
        if body is not None:
            request_headers["Content-Type"] = "application/json; charset=utf-8"
            data = json.dumps(body).encode("utf-8")
        request_headers.update(headers or {})

        renewed = False
        attempt = 0
        while True:
            token = self.token_provider(force_refresh=renewed)
            request_headers["Authorization"] = f"Bearer {token}"
            try:
                response = self._send(method, url, request_headers, data)
                if response.status_code == 401 and not renewed:
                    # The token may have been revoked or expired early: renew it once.
                    logger.info("Dataverse returned 401 for %s %s; renewing the token", method, path)
                    renewed = True
                    continue
                if response.status_code < 400:
                    return response
                raise error_from_response(response)
            except (errors.TransientError, errors.Throttled) as error:
                attempt += 1
                if attempt > self.max_retries:
                    raise
                delay = self._backoff(attempt, error)
                if delay is None:
                    raise
                logger.warning(
                    "Dataverse %s %s failed (%s); retry %d of %d in %.1f s",
                    method, path, error, attempt, self.max_retries, delay,
                )
                time.sleep(delay)

    def _send(self, method, url, headers, data):
        self.request_count += 1
        if not url.endswith("$batch"):
            self.operation_count += 1
        # Messages name the path without its query: a $filter carries emails and phones.
        target = f"{method} {url.split('?', 1)[0]}"
        slot = self.limiter.slot() if self.limiter else contextlib.nullcontext()
        try:
            with slot:
                return self.session.request(method, url, headers=headers, data=data,
                                            timeout=self.timeout)
        except requests.Timeout as error:
            raise errors.TransientError(
                f"Dynamics did not respond to {target} within {self.timeout[1]} s."
            ) from error
        except requests.exceptions.SSLError as error:
            # A certificate problem does not go away on retry.
            raise errors.DataverseError(
                f"The TLS certificate of {self.org_url} is not trusted "
                f"({error.__class__.__name__}). Check DYNAMICS_CA_BUNDLE."
            ) from error
        except requests.ConnectionError as error:
            raise errors.TransientError(
                f"Could not connect to Dynamics at {self.org_url} for {target} "
                f"({_reason(error)})."
            ) from error

    def _backoff(self, attempt, error):
        """Return the seconds to wait before retry `attempt`, or None to give up now."""
        if isinstance(error, errors.Throttled):
            if error.retry_after > self.max_backoff:
                return None
            return error.retry_after + random.uniform(0, 1)
        # Capped exponential backoff with full jitter.
        return random.uniform(0, min(self.max_backoff, 0.5 * 2 ** attempt))


def _align(groups, results):
    """Return one result per operation: a failed change set returns one result, which
    stands for all of its operations."""
    aligned = []
    position = 0
    for group in groups:
        if isinstance(group, batch.ChangeSet):
            if position < len(results) and not results[position].ok:
                aligned += [results[position]] * len(group)
                position += 1
            else:
                aligned += results[position:position + len(group)]
                position += len(group)
        else:
            aligned += results[position:position + 1]
            position += 1
    return aligned


def error_from_response(response):
    """Build the client error that matches a Dataverse error response."""
    try:
        payload = response.json()
    except ValueError:
        payload = response.text[:500]
    return error_from_parts(response.status_code, response.headers, payload,
                            reason=response.reason)


def error_from_result(result):
    """Build the client error for a failed operation inside a $batch."""
    return error_from_parts(result.status, result.headers, result.body)


def error_from_parts(status, headers, payload, reason=""):
    """Build the client error from a status, headers and a decoded body."""
    code = ""
    message = ""
    if isinstance(payload, dict):
        error = payload.get("error", {}) or {}
        code = error.get("code", "") or ""
        message = error.get("message", "") or ""
    elif isinstance(payload, str):
        message = payload
    message = message or f"Dynamics returned HTTP {status} {reason}".strip() + "."
    headers = {key.lower(): value for key, value in (headers or {}).items()}
    kwargs = {"status": status, "code": code, "request_id": headers.get("req_id", "")}

    if status == 400:
        return errors.ValidationFailed(message, **kwargs)
    if status == 401:
        return errors.AuthorizationRequired(message, **kwargs)
    if status == 403:
        return errors.PermissionDenied(message, **kwargs)
    if status == 404:
        return errors.NotFound(message, **kwargs)
    if status == 412:
        return errors.PreconditionFailed(message, **kwargs)
    if status == 429:
        retry_after = _parse_retry_after(headers.get("retry-after"))
        return errors.Throttled(message, retry_after=retry_after, **kwargs)
    if code == "0x80040333":
        return errors.DuplicateDetected(message, **kwargs)
    if status >= 500:
        return errors.TransientError(message, **kwargs)
    return errors.DataverseError(message, **kwargs)


def _reason(error):
    """Return the innermost cause of a connection error, without URLs or queries."""
    while True:
        inner = error.__cause__ or error.__context__
        # Stop at our own errors: an earlier attempt's error is only the context.
        if inner is None or isinstance(inner, errors.DataverseError):
            break
        error = inner
    text = str(error)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "getaddrinfo" in text:
        return "host name not found"
    return error.__class__.__name__


def _parse_retry_after(value):
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return 5.0
