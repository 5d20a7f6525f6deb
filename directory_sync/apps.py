from django.apps import AppConfig


class DirectorySyncConfig(AppConfig):
    name = "directory_sync"
    verbose_name = "Directory sync"

    def ready(self) -> None:
        # Both hooks point downwards so neither layer imports the one above it (issue 14):
        # the outbox wakes the apply task without importing tasks, and the members pages ask
        # about the sync without importing directory_sync.
        from members.directory import directory_register

        from . import outbox
        from .scim.profile import directory_profile_extra
        from .selectors import members_sync_status
        from .sentences import member_sync_notes
        from .tasks import apply_change_events

        outbox.apply_job_register(apply_change_events)
        directory_register(
            status=members_sync_status,
            member_attributes=directory_profile_extra,
            member_notes=member_sync_notes,
        )
