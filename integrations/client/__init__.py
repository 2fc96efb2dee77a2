"""HTTP client for the Dataverse Web API (Dynamics 365) and its error types."""

from . import errors
from .batch import ChangeSet, Operation
from .http import DataverseClient, DataverseSession, error_from_result

__all__ = ["ChangeSet", "DataverseClient", "DataverseSession", "Operation", "errors",
           "error_from_result"]
