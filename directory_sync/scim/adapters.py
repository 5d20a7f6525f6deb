"""django-scim2 adapters over ``DirectoryRecord``: SCIM in, record services out.

As in Zulip's SCIM integration, an adapter only translates: ``from_dict`` and
``handle_operations`` turn a SCIM payload into a pending change (Entra quirks are normalised in
``documents``/``patch``), ``save``/``delete`` apply it through ``directory_sync.records`` (the
only writers), and ``to_dict`` renders the stored document with ``id`` and ``meta``. Record
service exceptions become SCIM errors in ``errors.scim_errors``, around every service call.
"""

from typing import Any

from django.conf import settings
from django.urls import get_script_prefix, reverse
from django_scim.adapters import SCIMMixin

from .. import process_state, records
from ..models import DirectoryRecord, SyncSettings
from ..store import reads
from . import errors, etags
from .document_checks import validate_group_document, validate_user_document
from .documents import (
    ENTERPRISE_SCHEMA,
    group_document_from_payload,
    group_mirror,
    manager_id,
    user_document_from_payload,
    user_mirror,
)
from .patch import (
    group_document_apply,
    group_patch_plan,
    operations_from_body,
    user_patch_apply,
)

# (script prefix, organization id) -> Tenant URL path: reverse() costs more than a resource.
_root_paths: dict = {}


def _root_paths_forget() -> None:
    _root_paths.clear()


process_state.register(_root_paths_forget, holds=("_root_paths",))


def base_location(request: Any = None, *args: Any, **kwargs: Any) -> str:
    """The Tenant URL of the request's organization, e.g. https://host/scim/v2/42.

    django-scim2's BASE_LOCATION_GETTER. ``BEEM_PUBLIC_URL`` wins over the request's host so
    locations stay right behind a proxy.
    """
    # Memoised on the request: a list page renders a location for each of its 100 resources,
    # and reverse() plus the host checks cost more than the rest of a resource (bench profile).
    cached = getattr(request, "_beem_base_location", None)
    if cached is not None:
        return cached
    organization = getattr(request, "scim_organization", None)
    organization_id = (
        organization.pk
        if organization is not None
        else request.resolver_match.kwargs["organization_id"]
    )
    key = (get_script_prefix(), organization_id)
    path = _root_paths.get(key)
    if path is None:
        path = reverse("scim:root", kwargs={"organization_id": organization_id}).rstrip("/")
        if len(_root_paths) < 10_000:
            _root_paths[key] = path
    origin = settings.BEEM_PUBLIC_URL or f"{request.scheme}://{request.get_host()}"
    location = origin + path
    if organization is not None:
        request._beem_base_location = location
    return location


def _meta(record: Any, resource_type: str, location: str) -> dict:
    return {
        "resourceType": resource_type,
        "created": record.created_at.isoformat(),
        "lastModified": record.updated_at.isoformat(),
        "location": location,
        "version": f'W/"{record.version}"',
    }


def _body(record: Any, scim_id: str) -> dict:
    document = dict(record.document)
    schemas = document.pop("schemas")
    return {"schemas": schemas, "id": scim_id, **document}


def user_resource(record: Any, base_url: str) -> dict:
    """A user record (``DirectoryRecord`` or ``reads.RecordRow``) as its SCIM resource."""
    scim_id = str(record.scim_id)
    body = _body(record, scim_id)
    manager = manager_id(record.document)
    if manager:
        extension = dict(body[ENTERPRISE_SCHEMA])
        extension["manager"] = {"value": manager, "$ref": f"{base_url}/Users/{manager}"}
        body[ENTERPRISE_SCHEMA] = extension
    body["meta"] = _meta(record, "User", f"{base_url}/Users/{scim_id}")
    return body


def group_resource(record: Any, base_url: str, member_ids: list[str] | None) -> dict:
    """A group record as its SCIM resource; ``member_ids`` are its live users' SCIM ids."""
    scim_id = str(record.scim_id)
    body = _body(record, scim_id)
    if member_ids:
        body["members"] = [
            {"value": member, "$ref": f"{base_url}/Users/{member}", "type": "User"}
            for member in member_ids
        ]
    body["meta"] = _meta(record, "Group", f"{base_url}/Groups/{scim_id}")
    return body


def directory_record_model() -> type[DirectoryRecord]:
    """django-scim2's USER_MODEL_GETTER (users and groups are both directory records)."""
    return DirectoryRecord


def _sync_settings(request: Any) -> SyncSettings | None:
    found = getattr(request, "scim_sync_settings", None)
    if found is None:
        found = SyncSettings.objects.filter(organization=request.scim_organization).first()
    return found


def _write_context(request: Any) -> dict:
    return {
        "organization": request.scim_organization,
        "run": getattr(request, "scim_run", None),
        "request_id": getattr(request, "request_id", "") or "",
    }


def _change_context(request: Any) -> dict:
    """``_write_context`` of a change to an existing record: with its If-Match versions."""
    return {**_write_context(request), "expected_versions": etags.if_match(request)}


class DirectoryRecordAdapter(SCIMMixin):
    """Common part of the user and group adapters."""

    resource_type = ""
    endpoint = ""
    id_field = "scim_id"

    def __init__(self, obj: DirectoryRecord | None, request: Any = None, scim_id: str = ""):
        super().__init__(obj, request=request)
        self.pending_document: dict | None = None
        self.pending_members: list[str] | None = None
        # The id of the record a write targets, when the view did not read it first (PATCH).
        self.scim_id = scim_id

    @property
    def id(self) -> str:
        return str(self.obj.scim_id) if self.obj is not None else self.scim_id

    @property
    def base_url(self) -> str:
        return base_location(self.request)

    @property
    def path(self) -> str:
        return f"{self.endpoint}/{self.id}"

    @property
    def location(self) -> str:
        return f"{self.base_url}{self.path}"

    @property
    def meta(self) -> dict:
        return _meta(self.obj, self.resource_type, self.location)

    def scim_errors(self):
        """``with self.scim_errors():`` around every record-service call."""
        return errors.scim_errors(self.resource_type, self.id)

    def delete(self) -> None:
        with self.scim_errors():
            records.record_delete(
                resource_type=self.resource_type, scim_id=self.id, **_change_context(self.request)
            )


class UserAdapter(DirectoryRecordAdapter):
    resource_type = DirectoryRecord.ResourceType.USER
    endpoint = "/Users"
    url_name = "scim:users"

    def to_dict(self) -> dict:
        return user_resource(self.obj, self.base_url)

    def validate_dict(self, d: Any) -> None:
        self.pending_document = user_document_from_payload(d)
        self._validate(self.pending_document, previous=None, own_id=self._own_id())

    def from_dict(self, d: Any) -> None:
        if self.pending_document is None:
            self.validate_dict(d)

    def _own_id(self) -> str | None:
        return self.id if self.obj is not None and self.obj.pk else None

    def _validate(self, document: dict, *, previous: dict | None, own_id: str | None) -> None:
        validate_user_document(document, sync_settings=_sync_settings(self.request))
        manager = manager_id(document)
        if manager and manager != (manager_id(previous) if previous else None):
            if manager == own_id:
                raise errors.invalid_value("A user cannot be their own manager.")
            if not reads.user_exists(organization=self.request.scim_organization, scim_id=manager):
                raise errors.invalid_value(
                    f"{ENTERPRISE_SCHEMA}:manager {manager!r} is not a user of this directory."
                )

    def save(self) -> None:
        """Create (no record yet) or replace (PUT) from the pending document."""
        document = self.pending_document
        with self.scim_errors():
            if self.obj is None or self.obj.pk is None:
                self.obj = records.record_create(
                    resource_type=self.resource_type,
                    document=document,
                    mirror=user_mirror(document),
                    **_write_context(self.request),
                )
            else:
                self.obj = records.record_update(
                    resource_type=self.resource_type,
                    scim_id=self.id,
                    change=lambda record: (document, user_mirror(document)),
                    **_change_context(self.request),
                ).record

    def handle_operations(self, operations: Any) -> None:
        operations = operations_from_body({"Operations": operations})

        def change(record: DirectoryRecord) -> tuple[dict, dict]:
            document = user_patch_apply(record.document, operations)
            self._validate(document, previous=record.document, own_id=str(record.scim_id))
            return document, user_mirror(document)

        with self.scim_errors():
            self.obj = records.record_update(
                resource_type=self.resource_type,
                scim_id=self.id,
                change=change,
                **_change_context(self.request),
            ).record


class GroupAdapter(DirectoryRecordAdapter):
    resource_type = DirectoryRecord.ResourceType.GROUP
    endpoint = "/Groups"
    url_name = "scim:groups"

    def __init__(
        self,
        obj: DirectoryRecord | None,
        request: Any = None,
        members: list[tuple[str, str]] | None = None,
        scim_id: str = "",
    ):
        super().__init__(obj, request=request, scim_id=scim_id)
        self.members = members

    def to_dict(self) -> dict:
        members = self.members
        if members is None and self.obj is not None:
            members = reads.group_members(group_ids=[self.obj.pk])[self.obj.pk]
        return group_resource(self.obj, self.base_url, [scim_id for scim_id, _ in members or ()])

    def validate_dict(self, d: Any) -> None:
        self.pending_document, self.pending_members = group_document_from_payload(d)
        validate_group_document(self.pending_document)

    def from_dict(self, d: Any) -> None:
        if self.pending_document is None:
            self.validate_dict(d)

    def save(self) -> None:
        document, members = self.pending_document, self.pending_members
        with self.scim_errors():
            if self.obj is None or self.obj.pk is None:
                self.obj = records.record_create(
                    resource_type=self.resource_type,
                    document=document,
                    mirror=group_mirror(document),
                    member_ids=members or (),
                    **_write_context(self.request),
                )
            else:
                # PUT replaces the whole resource: members absent means no members (RFC 7644
                # §3.5.1).
                self.obj = records.record_update(
                    resource_type=self.resource_type,
                    scim_id=self.id,
                    change=lambda record: (document, group_mirror(document)),
                    member_changes=[records.MemberChange("replace", tuple(members or ()))],
                    **_change_context(self.request),
                ).record
        self.members = None

    def handle_operations(self, operations: Any) -> None:
        operations = operations_from_body({"Operations": operations})
        plan = group_patch_plan(operations)
        change = None
        if plan.changes:

            def change(record: DirectoryRecord) -> tuple[dict, dict]:
                document = group_document_apply(record.document, plan.changes)
                validate_group_document(document)
                return document, group_mirror(document)

        with self.scim_errors():
            self.obj = records.record_update(
                resource_type=self.resource_type,
                scim_id=self.id,
                change=change,
                member_changes=[records.MemberChange(m.op, m.ids) for m in plan.member_ops],
                **_change_context(self.request),
            ).record
