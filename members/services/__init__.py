"""Writes to the members domain: the only code that changes members' rows.

Every service is keyword-only, owns its transaction, and is safe to call again with the same
arguments (it converges instead of duplicating). Callers use this package
(``from members import services``); each submodule holds one kind of write:

- ``audit``: the audit trail; ``organizations``: tenants and their administrators;
- ``errors``: ``MemberError`` and the member field names; ``member_fields``: normalising and
  checking a member's fields (E.164 mobile, email, uniqueness);
- ``members``: creating and editing one member; ``member_removal``: deleting and merging;
- ``member_batches``: the sync engine's batch writes of many members;
- ``departments``, ``groups``, ``resources``.
"""

from .audit import audit_record
from .departments import (
    department_change,
    department_change_refusal,
    department_create,
    department_get_or_create,
    department_path_ensure,
    member_departments_set,
)
from .errors import DIRECTORY_OWNED_FIELDS, MEMBER_FIELDS, MemberError
from .groups import group_create, group_delete, group_members_set, group_rename, member_groups_add
from .member_batches import (
    member_departments_set_many,
    member_groups_add_many,
    members_build,
    members_field_clear,
    members_insert,
    members_save_fields,
)
from .member_removal import (
    MemberDeletion,
    MemberMerge,
    member_delete,
    member_delete_by_admin,
    member_delete_refusal,
    member_merge,
)
from .members import member_create, member_create_by_admin, member_edit, member_update
from .organizations import administrator_ensure, organization_get_or_create
from .resources import resource_create, resource_reassign, resources_move_from_deleted_owner

__all__ = [
    "DIRECTORY_OWNED_FIELDS",
    "MEMBER_FIELDS",
    "MemberDeletion",
    "MemberError",
    "MemberMerge",
    "administrator_ensure",
    "audit_record",
    "department_change",
    "department_change_refusal",
    "department_create",
    "department_get_or_create",
    "department_path_ensure",
    "group_create",
    "group_delete",
    "group_members_set",
    "group_rename",
    "member_create",
    "member_create_by_admin",
    "member_delete",
    "member_delete_by_admin",
    "member_delete_refusal",
    "member_departments_set",
    "member_departments_set_many",
    "member_edit",
    "member_groups_add",
    "member_groups_add_many",
    "member_merge",
    "member_update",
    "members_build",
    "members_field_clear",
    "members_insert",
    "members_save_fields",
    "organization_get_or_create",
    "resource_create",
    "resource_reassign",
    "resources_move_from_deleted_owner",
]
