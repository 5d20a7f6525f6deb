"""The error every members service raises for a refused write, and the member fields it knows."""


class MemberError(ValueError):
    """A member write was refused; ``field`` names the offending attribute. ``msgid`` and
    ``params`` (optional) keep the message untranslated for a reader in another language
    (the sync log stores them, directory_sync/notes.py)."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        msgid: str | None = None,
        params: dict | None = None,
    ):
        super().__init__(message)
        self.field, self.msgid, self.params = field, msgid, params


MEMBER_FIELDS = (
    "display_name",
    "given_name",
    "family_name",
    "phone",
    "email",
    "job_title",
    "country",
    "employee_number",
)


# Fields Entra ID owns for a directory-managed member: read-only in the admin suite while the
# organization's sync is active, or Entra would overwrite the admin's edit on its next cycle.
DIRECTORY_OWNED_FIELDS = frozenset({*MEMBER_FIELDS, "manager", "departments"})
