"""Dynamics environments: which URLs may be connected, and listing them through the
Global Discovery Service.

Every way an environment URL reaches the product goes through
`validate_environment_url`: the URL form, a pick from discovery, the application user
form and the Dataverse client itself. A URL outside Microsoft's Dynamics domains
therefore never receives a request or an access token.
"""

import logging
import re
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ValidationError

logger = logging.getLogger(__name__)

# Domains of Dynamics 365 environments: the commercial cloud (crm, crm2, crm4 and the
# other regional names), US Government (GCC High, DoD) and the China cloud (21Vianet).
DYNAMICS_DOMAINS = ("dynamics.com", "microsoftdynamics.us", "dynamics.cn")
DISCOVERY_PATH = "/api/discovery/v2.0/Instances"


class DiscoveryError(Exception):
    """Listing the environments through the Global Discovery Service failed."""


# One label of a DNS host name (RFC 1123): letters, digits and inner hyphens, 1 to 63.
_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _allowed_host(host, port):
    """Return whether `host` may serve an environment on `port` (None for the default)."""
    if any(host.endswith("." + domain) for domain in DYNAMICS_DOMAINS):
        # Microsoft serves every environment on the default https port, under host names
        # made of plain labels only.
        labels = host.split(".")
        return port in (None, 443) and all(_HOST_LABEL.fullmatch(label) for label in labels)
    extra = {name.strip().lower() for name in settings.DYNAMICS_EXTRA_ENVIRONMENT_HOSTS}
    return host in extra


def validate_environment_url(url, *, allow_path=False):
    """Return `url` as https://host[:port] if it names a Dynamics environment.

    Raises ValidationError unless the URL is https, has no user name, query or fragment,
    and its host is in one of DYNAMICS_DOMAINS or in DYNAMICS_EXTRA_ENVIRONMENT_HOSTS.
    With `allow_path` a path is kept (the discovery service's URL has one).
    """
    url = (url or "").strip()
    if not url:
        raise ValidationError("Enter the environment URL, for example "
                              "https://contoso.crm.dynamics.com.", code="required")
    # Browsers, requests and urllib parse backslashes and control characters
    # differently, and IDNA may map non-ASCII characters to ASCII ones. A URL with any
    # of them is rejected rather than guessed at, because Microsoft's hosts are ASCII.
    if (not url.isascii() or "\\" in url
            or any(ord(char) < 33 or ord(char) == 127 for char in url)):
        raise ValidationError(f"{url!r} is not a valid URL.", code="invalid")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ValidationError(f"{url!r} is not a valid URL: {error}.", code="invalid")
    if parts.scheme.lower() != "https":
        raise ValidationError(f"{url} is not an https URL. Dynamics environments are "
                              "reached over https only.", code="not_https")
    host = (parts.hostname or "").lower()
    if not host or parts.username is not None or parts.password is not None:
        raise ValidationError(f"{url} is not a valid environment URL.", code="invalid")
    if parts.query or parts.fragment or (parts.path not in ("", "/") and not allow_path):
        raise ValidationError(f"{url} has a path, query or fragment. Enter only the "
                              "environment's address, for example "
                              "https://contoso.crm.dynamics.com.", code="invalid")
    if not _allowed_host(host, port):
        raise ValidationError(
            f"{parts.netloc} is not a Dynamics 365 host. Enter an environment URL such "
            "as https://contoso.crm.dynamics.com: its host must end in .dynamics.com, "
            ".microsoftdynamics.us or .dynamics.cn, with no port.", code="not_dynamics")
    netloc = host if port in (None, 443) else f"{host}:{port}"
    path = parts.path.rstrip("/") if allow_path else ""
    return f"https://{netloc}{path}"


@dataclass(frozen=True)
class Environment:
    """One environment as the Global Discovery Service lists it."""

    name: str
    unique_name: str
    environment_id: str
    tenant_id: str
    # The Web API's base address, which is what the product connects to.
    api_url: str
    # The address users open in a browser; often the same host as api_url.
    url: str
    state: str

    def as_dict(self):
        return asdict(self)


def _environment_from_instance(instance):
    """Return an Environment, or None when the instance's API URL is not allowed."""
    try:
        api_url = validate_environment_url(instance.get("ApiUrl") or "")
    except ValidationError as error:
        logger.warning("Discovery listed environment %s with a rejected API URL: %s",
                       instance.get("UniqueName"), error.messages[0])
        return None
    state = instance.get("State")
    return Environment(
        name=instance.get("FriendlyName") or instance.get("UniqueName") or api_url,
        unique_name=instance.get("UniqueName") or "",
        environment_id=instance.get("EnvironmentId") or "",
        tenant_id=instance.get("TenantId") or "",
        api_url=api_url,
        url=instance.get("Url") or api_url,
        # NOTE: 0 for enabled and 1 for disabled follows the v2.0 service's Instance
        # type as documented; another value is shown as it came.
        state={0: "Enabled", 1: "Disabled"}.get(state, str(state)),
    )


def discovery_scopes():
    return [discovery_base_url() + "/.default"]


def discovery_base_url():
    """Return DYNAMICS_DISCOVERY_URL, checked like an environment URL."""
    return validate_environment_url(settings.DYNAMICS_DISCOVERY_URL, allow_path=True)


def list_environments(session, access_token):
    """Return the environments the signed-in user can reach, sorted by name.

    `session` is the HTTP session MSAL uses (timeouts and CA bundle set). Instances
    whose API URL is not a Dynamics host are left out. Raises DiscoveryError.
    """
    url = discovery_base_url() + DISCOVERY_PATH
    try:
        response = session.get(url, headers={"Authorization": f"Bearer {access_token}",
                                             "Accept": "application/json"})
    except requests.RequestException as error:
        raise DiscoveryError(f"Could not reach the Global Discovery Service at {url} "
                             f"({error.__class__.__name__}). Try again later.") from error
    if response.status_code != 200:
        raise DiscoveryError(f"The Global Discovery Service returned HTTP "
                             f"{response.status_code} for {url}. Try again, or connect "
                             "by entering the environment URL.")
    try:
        instances = response.json()["value"]
    except (ValueError, KeyError, TypeError) as error:
        raise DiscoveryError(f"The Global Discovery Service at {url} returned a body "
                             "without a list of instances.") from error
    environments = [env for env in map(_environment_from_instance, instances) if env]
    return sorted(environments, key=lambda env: (env.name.lower(), env.unique_name))
