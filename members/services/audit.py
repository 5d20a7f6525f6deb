"""The audit trail: every administrator, operator and directory action writes one entry."""

from ..models import AuditEntry, Organization


def audit_record(
    *,
    organization: Organization,
    action: str,
    actor=None,
    actor_label: str | None = None,
    detail: dict | None = None,
) -> AuditEntry:
    label = actor_label or (f"admin:{actor.get_username()}" if actor is not None else "system")
    return AuditEntry.objects.create(
        organization=organization,
        actor=actor,
        actor_label=label,
        action=action,
        detail=detail or {},
    )
