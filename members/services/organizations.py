"""Organizations (tenants) and the staff users who administer them."""

from django.contrib.auth import get_user_model
from django.db import transaction

from ..models import Administrator, Organization


def organization_get_or_create(*, slug: str, name: str) -> Organization:
    organization, _ = Organization.objects.get_or_create(slug=slug, defaults={"name": name})
    return organization


def administrator_ensure(
    *, organization: Organization, username: str, password: str, email: str = ""
) -> Administrator:
    """Create (or reset the password of) a staff user administering ``organization``."""
    User = get_user_model()
    with transaction.atomic():
        user, _ = User.objects.get_or_create(username=username, defaults={"email": email})
        user.is_staff = True
        user.set_password(password)
        user.save()
        admin, _ = Administrator.objects.update_or_create(
            user=user, defaults={"organization": organization}
        )
    return admin
