"""Field mappings: which lead field fills which Dynamics column."""

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldMapping:
    """Copies one field of our Lead model into one column of a Dynamics table."""

    lead_field: str
    column: str


# The default mappings for the Dynamics "lead" table. Phone goes to telephone1, which the
# Dynamics lead form labels "Business Phone". The owner is bound separately.
DEFAULT_LEAD_MAPPINGS = (
    FieldMapping("first_name", "firstname"),
    FieldMapping("last_name", "lastname"),
    FieldMapping("email", "emailaddress1"),
    FieldMapping("job_title", "jobtitle"),
    FieldMapping("company", "companyname"),
    FieldMapping("phone", "telephone1"),
    FieldMapping("website", "websiteurl"),
)


def mapped_values(lead, mappings):
    """Return {column: value} for the mapped fields that have a value on the lead.

    Empty fields are left out, so an update never blanks a value already in Dynamics.
    """
    values = {}
    for mapping in mappings:
        value = (getattr(lead, mapping.lead_field) or "").strip()
        if value:
            values[mapping.column] = value
    return values
