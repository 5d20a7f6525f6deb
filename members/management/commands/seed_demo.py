"""Create (idempotently) the demo organization, its admin login and a few members."""

from django.core.management.base import BaseCommand
from django.db import transaction

from members import services
from members.models import Member

DEMO_PASSWORD = "beem-demo-2026"


class Command(BaseCommand):
    help = "Create the demo organization 'Beem Demo' with an admin login, and print the login."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin@demo.beem")
        parser.add_argument("--password", default=DEMO_PASSWORD)
        parser.add_argument(
            "--port", type=int, default=8000, help="The port `make run` serves on (PORT=)."
        )

    def handle(self, *args, username: str, password: str, port: int, **options):
        with transaction.atomic():
            org = services.organization_get_or_create(slug="demo", name="Beem Demo")
            services.administrator_ensure(organization=org, username=username, password=password)
            if not Member.objects.filter(organization=org).exists():
                hq = services.department_path_ensure(organization=org, path=["Head Office"])
                eng = services.department_path_ensure(
                    organization=org, path=["Head Office", "Engineering"]
                )
                people = [
                    ("Sara Al-Harbi", "+966512345678", "sara@demo.beem", eng),
                    ("Omar Haddad", "+966512345679", None, eng),
                    ("Lina Nasser", None, "lina@demo.beem", hq),
                ]
                for name, phone, email, dep in people:
                    given, family = name.split(" ", 1)
                    m = services.member_create(
                        organization=org,
                        display_name=name,
                        given_name=given,
                        family_name=family,
                        phone=phone,
                        email=email,
                    )
                    services.member_departments_set(member=m, departments=[dep])
                    services.resource_create(
                        organization=org, kind="document", name=f"{given}'s handbook", owner=m
                    )
        self.stdout.write(
            self.style.SUCCESS(
                f"\nBeem Admin Suite demo is ready at http://127.0.0.1:{port}/\n"
                f"  organization: {org.name} (id {org.pk}, slug {org.slug})\n"
                f"  admin login:  {username}\n"
                f"  password:     {password}\n"
            )
        )
