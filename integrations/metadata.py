"""Column metadata of the org's lead, contact and account tables.

Read from EntityDefinitions when an integration connects, and stored on the integration:
field mappings are checked against it when saved, and the sync cuts text to each
column's maximum length.
"""

import logging

from django.utils import timezone

logger = logging.getLogger(__name__)

TABLES = ("lead", "contact", "account")


def fetch_columns(client, table):
    """Return {column: {"type", "label", "max_length", "valid_for_create",
    "valid_for_update"}} for one table."""
    path = f"EntityDefinitions(LogicalName='{table}')/Attributes"
    rows = client.request("GET", path, params={
        "$select": "LogicalName,AttributeType,DisplayName,IsValidForCreate,IsValidForUpdate",
    }).json()["value"]
    columns = {}
    for row in rows:
        label = ((row.get("DisplayName") or {}).get("UserLocalizedLabel") or {}).get("Label")
        columns[row["LogicalName"]] = {
            "type": row.get("AttributeType"),
            "label": label or row["LogicalName"],
            "max_length": None,
            "valid_for_create": row.get("IsValidForCreate", True),
            "valid_for_update": row.get("IsValidForUpdate", True),
        }
    for cast in ("StringAttributeMetadata", "MemoAttributeMetadata"):
        rows = client.request("GET", f"{path}/Microsoft.Dynamics.CRM.{cast}", params={
            "$select": "LogicalName,MaxLength",
        }).json()["value"]
        for row in rows:
            if row["LogicalName"] in columns:
                columns[row["LogicalName"]]["max_length"] = row.get("MaxLength")
    return columns


def refresh_metadata(integration, client):
    """Read the metadata of every table the sync writes and store it on `integration`."""
    integration.dynamics_metadata = {table: fetch_columns(client, table) for table in TABLES}
    integration.metadata_fetched_at = timezone.now()
    integration.save(update_fields=["dynamics_metadata", "metadata_fetched_at", "updated_at"])
    logger.info("Integration %s: column metadata read for %s", integration.pk,
                ", ".join(TABLES))
    return integration.dynamics_metadata
