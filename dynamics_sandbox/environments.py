"""Dataverse environments of the sandbox tenant: where each keeps its records and its URL.

The sandbox serves Contoso Sales at its main URL, next to the sign-in endpoints and the
Global Discovery Service, and every other environment of seed.ENVIRONMENTS at a port of
its own. Each environment has its own store, so a record created in one is absent
from the others, while sign-in grants live in the main store only.
"""

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from . import seed
from .store import Store

# Folder in the data folder with one subfolder per extra environment.
ENVIRONMENTS_FOLDER = "environments"


@dataclass
class SandboxEnvironment:
    """One environment that a running sandbox serves."""

    # Friendly name, as discovery reports it in FriendlyName.
    name: str
    unique_name: str
    environment_id: str
    # https://HOST:PORT with no trailing slash. The Web API is at {url}/api/data/v9.2/.
    url: str
    store: Store
    organization_id: str

    @property
    def port(self):
        return urlsplit(self.url).port


def environment_data_dir(data_dir, unique_name):
    """Return the folder that keeps the records of the environment `unique_name`.

    Contoso Sales uses the data folder itself, so folders written before the sandbox
    served a second environment keep their records.
    """
    if unique_name == seed.CONTOSO_SALES:
        return Path(data_dir)
    return Path(data_dir) / ENVIRONMENTS_FOLDER / unique_name


def open_store(data_dir, unique_name, cache=False):
    """Open (and seed) the store of the environment `unique_name`.

    Raise KeyError for a unique name that seed.ENVIRONMENTS does not define.
    """
    if unique_name not in seed.ENVIRONMENTS_BY_UNIQUE_NAME:
        names = ", ".join(seed.ENVIRONMENTS_BY_UNIQUE_NAME)
        raise KeyError(f"Unknown environment {unique_name!r}. Use one of: {names}.")
    return Store(environment_data_dir(data_dir, unique_name), cache=cache,
                 environment=unique_name)


def extra_environment_port(main_port, index):
    """Return the port to request for the `index`-th environment after Contoso Sales.

    A fixed main port P puts the extra environments on P + 1, P + 2 and so on, so
    their URLs stay the same between runs. Port 0 lets the system pick free ports.
    """
    if main_port == 0:
        return 0
    return main_port + 1 + index


def make_environment(environment_seed, url, store):
    return SandboxEnvironment(
        name=environment_seed.friendly_name,
        unique_name=environment_seed.unique_name,
        environment_id=environment_seed.environment_id,
        url=url,
        store=store,
        organization_id=environment_seed.organization_id,
    )
