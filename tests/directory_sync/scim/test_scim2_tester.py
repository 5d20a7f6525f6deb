"""scim2-tester's compliance checks against our endpoint, in process.

The checks run through scim2-client's WSGI engine against Django's WSGI application (so the
real middleware, auth check and CSRF rules apply), with a token from the real /o/token/. The
test is transactional because the WSGI handler closes the database connection after each
request, as in production.
"""

import pytest
from django.core.handlers.wsgi import WSGIHandler
from scim2_client.engines.wsgi import WSGISCIMClient
from scim2_models import Path
from scim2_tester import Status, check_server, filling

from directory_sync import services

# The tester assumes any user may lose or gain any attribute; Beem refuses a user it could
# never apply (issue 12). Its users carry a work email (``work_emails``), so adding emails
# answers that email too, and removing them leaves no identifier (400 invalidValue).
IDENTIFIER_CHECKS = {("check_add_attribute", "emails"), ("check_remove_attribute", "emails")}


@pytest.fixture
def work_emails(monkeypatch):
    """Users scim2-tester creates carry a work email. Beem refuses a user it could never apply
    (identifying by email: one without a work email or a valid mobile number, issue 12), and
    the tester creates users with only their required attributes, picks email types at random
    and invents phone numbers without a country code."""
    example, fill = filling.get_random_example_value, filling.fill_with_random_values

    def work_email_type(path):
        binding = path.resolve()
        model = binding.target_model if binding is not None else None
        # The tester builds its models from our /Schemas: the email entry model is "Emails".
        if model is not None and model.__name__ == "Emails" and binding.target_field_name == "type":
            return "work"
        return example(path)

    def fill_with_work_email(context, obj, paths=None, mutability=None, required=None):
        filled = fill(context, obj, paths=paths, mutability=mutability, required=required)
        if paths is None and hasattr(filled, "user_name") and not getattr(filled, "emails", 1):
            emails = [p for p in Path[type(filled)].iter_paths() if str(p) == "emails"]
            fill(context, filled, paths=emails)
        return filled

    monkeypatch.setattr(filling, "get_random_example_value", work_email_type)
    monkeypatch.setattr(filling, "fill_with_random_values", fill_with_work_email)


@pytest.mark.django_db(transaction=True)
def test_scim2_tester_checks_all_pass(organization, scim_token, sync_settings_active, work_emails):
    # scim2-tester invents 10-digit phone numbers without a country code; identify by email so
    # its users are accepted (the phone rule has its own tests).
    services.sync_settings_update(organization=organization, identify_by="email")
    client = WSGISCIMClient(
        WSGIHandler(),
        base_url=f"http://testserver/scim/v2/{organization.pk}",
        headers={"Authorization": f"Bearer {scim_token}"},
    )

    results = check_server(client, raise_exceptions=False)

    passed = sum(r.status == Status.SUCCESS for r in results)
    print(f"scim2-tester ran {len(results)} checks, {passed} passed")
    problems = [
        (r.title, r.resource_type, r.status.name, r.reason)
        for r in results
        if r.status != Status.SUCCESS
        and (r.title, (r.data or {}).get("urn")) not in IDENTIFIER_CHECKS
    ]
    assert problems == []
    assert passed >= 80
    checked = {r.resource_type for r in results}
    assert {"User", "Group"} <= checked
