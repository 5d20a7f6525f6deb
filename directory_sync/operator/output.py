"""What every subcommand shares: the ``--org`` argument and its lookup, plain-text tables, ages
and a progress bar."""

from django.core.management.base import CommandError

from members.models import Organization


def org_argument(parser, *, required: bool) -> None:
    parser.add_argument(
        "--org",
        required=required,
        metavar="ID_OR_SLUG",
        help="The organization, by numeric id or slug."
        + ("" if required else " Default: every organization."),
    )


def organization_lookup(value: str) -> Organization:
    """An organization by id or slug, or a CommandError naming what was tried."""
    value = (value or "").strip()
    by_id = Organization.objects.filter(pk=int(value)).first() if value.isdigit() else None
    by_slug = Organization.objects.filter(slug=value).first()
    if by_id is not None and by_slug is not None and by_id.pk != by_slug.pk:
        # One organization's id is another's slug: acting on a guess could touch the wrong
        # tenant.
        raise CommandError(
            f"--org {value!r} is ambiguous: it is the id of {by_id.slug!r} and the slug of "
            f"organization {by_slug.pk}. Use the other organization's slug or id instead."
        )
    organization = by_id or by_slug
    if organization is None:
        raise CommandError(
            f"Unknown organization {value!r}: no organization has that id or slug. "
            "Run `manage.py directory_sync status` to list them."
        )
    return organization


def organizations_lookup(value: str | None) -> list[Organization]:
    """``--org`` when given, else every organization (by id)."""
    if value:
        return [organization_lookup(value)]
    return list(Organization.objects.order_by("id"))


def age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


class TextProgress:
    """A one-line text progress bar on stderr (redrawn with carriage returns)."""

    WIDTH = 30

    def __init__(self, stream, label: str):
        self.stream = stream
        self.label = label
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        total = max(total, 1)
        filled = int(self.WIDTH * min(done, total) / total)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total}", ending="")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("")
