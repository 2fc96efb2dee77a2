"""HTTP client for the Dataverse Web API (Dynamics 365) and its error types."""

from . import errors
from .http import DataverseClient, DataverseSession

__all__ = ["DataverseClient", "DataverseSession", "errors"]
