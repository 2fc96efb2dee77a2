"""Forms of the Sync Settings page: general and advanced settings, and field mappings."""

from django import forms
from django.core.exceptions import ValidationError

from teams.models import Subteam

from . import settings_page
from .connection import TENANT_ID_PATTERN
from .environments import validate_environment_url
from .field_mappings import NUMBER_TYPES, TEXT_TYPES, validate_mapping
from .models import FieldMapping, Integration
from .sync import mappings

# Column types a mapping can write, besides the owner (see validate_mapping).
WRITABLE_TYPES = TEXT_TYPES | NUMBER_TYPES | {"Owner"}


class SettingsForm(forms.Form):
    """General and advanced settings of one integration."""

    assignment = forms.ChoiceField(
        label="Integration Assignment",
        help_text="Whose leads this integration syncs: the full team or one subteam. A "
                  "subteam's own integration wins over the full-team one for its members.",
    )
    auto_sync = forms.BooleanField(
        label="Auto Sync", required=False,
        help_text="ON: every new lead goes to Dynamics as soon as it is captured. OFF: "
                  "leads wait until an admin, or a member if allowed, syncs them.",
    )
    primary_object = forms.ChoiceField(
        label="Primary Object", choices=Integration.PrimaryObject.choices,
        help_text="The Dynamics table that new leads are written to.",
    )
    sync_notes = forms.BooleanField(
        label="Sync Notes", required=False,
        help_text=Integration._meta.get_field("sync_notes").help_text,
    )
    update_existing_contacts = forms.BooleanField(
        label="Update Contact Logic", required=False,
        help_text=Integration._meta.get_field("update_existing_contacts").help_text,
    )
    search_accounts_by_website = forms.BooleanField(
        label="Search for existing Accounts by Website", required=False,
        help_text=Integration._meta.get_field("search_accounts_by_website").help_text,
    )
    member_sync_allowed = forms.BooleanField(
        label="Members may sync their own leads", required=False,
        help_text=Integration._meta.get_field("member_sync_allowed").help_text,
    )

    ADVANCED_FIELDS = ("sync_notes", "update_existing_contacts",
                       "search_accounts_by_website", "member_sync_allowed")

    def __init__(self, *args, integration, user, **kwargs):
        initial = {name: getattr(integration, name) for name in settings_page.SETTING_FIELDS}
        initial["assignment"] = settings_page.assignment_of(integration)
        super().__init__(*args, initial=initial, **kwargs)
        self.integration = integration
        self.fields["assignment"].choices = settings_page.assignment_choices(user, integration)

    def clean_assignment(self):
        value = self.cleaned_data["assignment"]
        settings_page.check_assignment_free(
            self.integration, settings_page.subteam_from_assignment(value))
        return value

    def general_fields(self):
        return [self[name] for name in self.fields if name not in self.ADVANCED_FIELDS]

    def advanced_fields(self):
        return [self[name] for name in self.ADVANCED_FIELDS]

    def advanced_has_errors(self):
        return any(self[name].errors for name in self.ADVANCED_FIELDS)


def column_choices(metadata, entity, current=""):
    """Return [(column, label)] of the writable columns of `entity`, by label.

    A stored column that the org does not offer stays listed, marked, so that opening
    and saving the page never changes a mapping by itself. Returns [] without metadata.
    """
    columns = (metadata or {}).get(entity) or {}
    choices = [
        (name, f"{info.get('label') or name} ({name})")
        for name, info in columns.items()
        if info.get("type") in WRITABLE_TYPES
        and (info.get("valid_for_create", True) or info.get("valid_for_update", True))
    ]
    choices.sort(key=lambda choice: choice[1].lower())
    if not columns:
        return []
    if current and current not in dict(choices):
        choices.insert(0, (current, f"{current} (not a writable column in this org)"))
    return [("", "Choose a column")] + choices


class MappingForm(forms.Form):
    """One field mapping row. Validated against the org's columns by validate_mapping."""

    DYNAMIC, FIXED = "dynamic", "fixed"

    id = forms.IntegerField(required=False, widget=forms.HiddenInput)
    entity = forms.ChoiceField(choices=FieldMapping.Entity.choices, widget=forms.HiddenInput)
    column = forms.CharField(label="Dynamics column", max_length=100)
    value_type = forms.ChoiceField(
        label="Value", choices=[(DYNAMIC, "Dynamic value (lead field)"),
                                (FIXED, "Fixed value")],
    )
    source = forms.ChoiceField(
        label="Lead field", required=False,
        choices=[("", "Choose a lead field")] + [
            (name, label) for name, (label, _) in mappings.SOURCE_FIELDS.items()
        ],
    )
    fixed_value = forms.CharField(label="Fixed value", max_length=500, required=False)
    mode = forms.ChoiceField(label="Mode", choices=FieldMapping.Mode.choices)

    def __init__(self, *args, metadata=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.metadata = metadata or {}
        entity = self.initial.get("entity")
        current = self.initial.get("column", "")
        if self.is_bound:
            entity = self.data.get(self.add_prefix("entity"), entity)
            current = self.data.get(self.add_prefix("column"), current)
        choices = column_choices(self.metadata, entity, current)
        if choices:
            self.fields["column"].widget = forms.Select(choices=choices)

    def clean(self):
        cleaned_data = super().clean()
        if self.errors:
            return cleaned_data
        cleaned_data["column"] = cleaned_data["column"].strip()
        if cleaned_data["value_type"] == self.DYNAMIC:
            cleaned_data["fixed_value"] = ""
            if not cleaned_data["source"]:
                self.add_error("source", "Choose the lead field to copy.")
                return cleaned_data
        else:
            cleaned_data["source"] = ""
            if not cleaned_data["fixed_value"].strip():
                self.add_error("fixed_value", "Enter the fixed value to write.")
                return cleaned_data
        try:
            validate_mapping(
                self.metadata, entity=cleaned_data["entity"], column=cleaned_data["column"],
                source=cleaned_data["source"], fixed_value=cleaned_data["fixed_value"],
                mode=cleaned_data["mode"],
            )
        except ValidationError as error:
            self.add_error(None, error)
        return cleaned_data


class BaseMappingFormSet(forms.BaseFormSet):
    def clean(self):
        """Reject a second mapping of one column, which the database also forbids."""
        if any(self.errors):
            return
        seen = set()
        for form in self.forms:
            if self._should_delete_form(form) or not form.has_changed() and not form.initial:
                continue
            key = (form.cleaned_data.get("entity"), form.cleaned_data.get("column"))
            if key in seen:
                form.add_error("column", f"'{key[1]}' is already mapped on this tab; "
                                         "edit that mapping or remove one of them.")
            seen.add(key)


MappingFormSet = forms.formset_factory(
    MappingForm, formset=BaseMappingFormSet, extra=0, can_delete=True)


def mapping_initial(integration):
    """Return the formset's initial rows for the integration's stored mappings."""
    return [
        {"id": row.pk, "entity": row.entity, "column": row.column,
         "value_type": MappingForm.DYNAMIC if row.source else MappingForm.FIXED,
         "source": row.source, "fixed_value": row.fixed_value, "mode": row.mode}
        for row in integration.field_mappings.all()
    ]


def mapping_formset(integration, data=None):
    return MappingFormSet(
        data, initial=mapping_initial(integration), prefix="mappings",
        form_kwargs={"metadata": integration.dynamics_metadata},
    )


def empty_mapping_forms(formset, integration):
    """Return {entity: blank MappingForm} that the "Add mapping" buttons copy."""
    blanks = {}
    for entity in FieldMapping.Entity.values:
        form = MappingForm(
            prefix=formset.add_prefix("__prefix__"), initial={"entity": entity},
            metadata=integration.dynamics_metadata, use_required_attribute=False,
            empty_permitted=True,
        )
        formset.add_fields(form, None)
        blanks[entity] = form
    return blanks


def mapping_edits(formset, integration):
    """Turn a valid formset into MappingEdits for settings_page.save_settings.

    Rows posted with an id the integration does not own are ignored, so a stale page
    cannot touch another integration's mappings.
    """
    stored = {row.pk: row for row in integration.field_mappings.all()}
    edits = settings_page.MappingEdits(added=[], changed=[], removed=[])
    deleted = formset.deleted_forms
    for form in formset.forms:
        mapping_id = form.cleaned_data.get("id")
        if form in deleted:
            if mapping_id in stored:
                edits.removed.append(stored[mapping_id])
            continue
        if not form.has_changed() and not form.initial:
            continue
        if mapping_id is None:
            edits.added.append(form.cleaned_data)
        elif mapping_id in stored:
            edits.changed.append((stored[mapping_id], form.cleaned_data))
    return edits


class AddSubteamIntegrationForm(forms.Form):
    """Picks the subteam that gets a new integration of its own."""

    subteam = forms.ModelChoiceField(queryset=Subteam.objects.none(), label="Subteam",
                                     empty_label="Choose a subteam")

    def __init__(self, *args, subteams, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["subteam"].queryset = subteams

    def clean_subteam(self):
        subteam = self.cleaned_data["subteam"]
        if Integration.objects.filter(subteam=subteam).exists():
            raise ValidationError(f"The subteam {subteam.name} already has an integration.")
        return subteam


# -- Connecting an environment -----------------------------------------------------------

class EnvironmentUrlForm(forms.Form):
    """Connect by entering the environment URL, then signing in."""

    environment_url = forms.CharField(
        label="Environment URL", max_length=255,
        help_text="The address of the Dynamics 365 environment, for example "
                  "https://contoso.crm.dynamics.com.",
    )

    def clean_environment_url(self):
        return validate_environment_url(self.cleaned_data["environment_url"])


class EnvironmentChoiceForm(forms.Form):
    """Pick one of the environments that discovery listed for the signed-in admin."""

    environment = forms.ChoiceField(label="Environment", widget=forms.RadioSelect)

    def __init__(self, *args, environments, **kwargs):
        super().__init__(*args, **kwargs)
        # Only listed environments are valid choices, so a posted value can never name
        # an environment (or URL) that discovery did not return for this sign-in.
        self.environments = {environment_key(env): env for env in environments}
        self.fields["environment"].choices = [
            (key, f"{env.name} ({env.unique_name})" if env.unique_name else env.name)
            for key, env in self.environments.items()
        ]

    def chosen(self):
        return self.environments[self.cleaned_data["environment"]]


def environment_key(environment):
    """Return the form value that identifies one discovered environment."""
    return environment.environment_id or environment.unique_name or environment.api_url


class ApplicationUserForm(forms.Form):
    """Connect as an application user of the environment (server-to-server)."""

    environment_url = forms.CharField(
        label="Environment URL", max_length=255,
        help_text="For example https://contoso.crm.dynamics.com.",
    )
    tenant_id = forms.CharField(
        label="Tenant ID", max_length=255,
        help_text="The Microsoft Entra tenant of the environment: its directory (tenant) "
                  "ID, or a domain such as contoso.onmicrosoft.com.",
    )
    client_id = forms.UUIDField(
        label="Application (client) ID",
        help_text="From the app registration's Overview page.",
    )
    client_secret = forms.CharField(
        label="Client secret", max_length=1024, strip=True,
        # The stored secret is never sent back to the browser.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="The secret's value from Certificates & secrets. It is stored "
                  "encrypted and never shown again.",
    )

    def clean_environment_url(self):
        return validate_environment_url(self.cleaned_data["environment_url"])

    def clean_tenant_id(self):
        tenant_id = self.cleaned_data["tenant_id"].strip()
        if tenant_id.lower() in ("common", "organizations", "consumers") \
                or not TENANT_ID_PATTERN.match(tenant_id):
            raise ValidationError(
                "Enter the tenant's ID (a GUID) or its domain, such as "
                "contoso.onmicrosoft.com. An application user signs in at one tenant, "
                "so common and organizations are not accepted.")
        return tenant_id.lower()

    def clean_client_id(self):
        return str(self.cleaned_data["client_id"])
