"""The sync decision tree for one lead, separate from HTTP details and tasks.

For the Leads primary object:
1. The lead was synced before and its Dynamics record still exists: update that record.
2. A Dynamics lead has the same email or phone: update it (open leads first, then the
   most recently modified one).
3. Otherwise create a Lead record, owned by the capturing member's Dynamics user when one
   has the member's email, else by the integration user.
"""

import logging
import uuid
from dataclasses import dataclass, field

from ..client import errors
from ..client.odata import any_equal, literal
from .mappings import DEFAULT_LEAD_MAPPINGS, mapped_values

logger = logging.getLogger(__name__)

@dataclass
class SyncResult:
    """The outcome of one lead's sync: the action, the record and how it matched."""

    outcome: str  # "created" or "updated"
    entity: str  # Dynamics logical name, "lead"
    record_id: str
    details: dict = field(default_factory=dict)


def planned_record_id(integration, lead_id):
    """Return the Dynamics id to create the lead's record with.

    The id is derived from the integration's random namespace and the lead, so a create
    retried after a lost response carries the same id. Dynamics rejects that second create
    with 412 instead of storing a duplicate, and the engine updates the existing record.
    """
    return str(uuid.uuid5(integration.record_id_namespace, f"lead:{lead_id}"))


def sync_lead(lead, integration, client):
    """Push one lead into the integration's org and return a SyncResult.

    Raises the client's errors (`integrations.client.errors`) when Dynamics refuses.
    """
    values = mapped_values(lead, DEFAULT_LEAD_MAPPINGS)

    if lead.dynamics_entity == "lead" and lead.dynamics_record_id:
        try:
            client.update("leads", lead.dynamics_record_id, values)
            return SyncResult("updated", "lead", lead.dynamics_record_id,
                              {"matched_by": "previous sync", "columns": sorted(values)})
        except errors.NotFound:
            logger.info(
                "Lead %s: Dynamics lead %s was deleted; looking for another match",
                lead.pk, lead.dynamics_record_id,
            )

    match, candidates = find_existing_lead(client, lead)
    if match is not None:
        record_id = match["leadid"]
        client.update("leads", record_id, values)
        details = {"matched_by": match_reason(lead, match), "columns": sorted(values)}
        if candidates > 1:
            details["other_matches"] = candidates - 1
        return SyncResult("updated", "lead", record_id, details)

    record_id = planned_record_id(integration, lead.pk)
    body = dict(values, leadid=record_id)
    owner_id, owner_source = choose_owner(client, lead, integration)
    if owner_id:
        body["ownerid@odata.bind"] = f"/systemusers({owner_id})"
    try:
        client.create("leads", body)
    except errors.PreconditionFailed:
        # An earlier attempt created the record but its response never arrived.
        logger.info("Lead %s: record %s already exists; updating it", lead.pk, record_id)
        client.update("leads", record_id, values)
        return SyncResult("updated", "lead", record_id,
                          {"matched_by": "earlier attempt", "columns": sorted(values)})
    return SyncResult("created", "lead", record_id,
                      {"columns": sorted(values), "owner": owner_source})


def find_existing_lead(client, lead):
    """Return (best matching Dynamics lead or None, number of matches) by email or phone."""
    condition = any_equal([("emailaddress1", lead.email.strip()),
                           ("telephone1", lead.phone.strip())])
    if not condition:
        return None, 0
    rows = client.query(
        "leads",
        filter=condition,
        select=["leadid", "statecode", "modifiedon", "emailaddress1", "telephone1"],
        orderby="modifiedon desc",
    )
    if not rows:
        return None, 0
    # Open leads (statecode 0) before qualified or disqualified ones; the query already
    # sorted each group newest first, and sorted() keeps that order.
    rows = sorted(rows, key=lambda row: row.get("statecode") != 0)
    return rows[0], len(rows)


def match_reason(lead, row):
    email = lead.email.strip().lower()
    if email and (row.get("emailaddress1") or "").lower() == email:
        return "email"
    return "phone"


def choose_owner(client, lead, integration):
    """Return (systemuser id, reason): the capturing member's Dynamics user when one has
    the member's email and is enabled, else the integration user."""
    email = (lead.captured_by.email or "").strip()
    if email:
        rows = client.query(
            "systemusers",
            filter=f"internalemailaddress eq {literal(email)} and isdisabled eq false",
            select=["systemuserid"],
            top=1,
        )
        if rows:
            return rows[0]["systemuserid"], "capturing member"
    return integration.dynamics_user_id or None, "integration user"
