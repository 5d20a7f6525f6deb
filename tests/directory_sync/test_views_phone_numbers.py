"""Every page that shows a +966… number shows it left to right (members.display.phone_ltr)."""

from django.urls import reverse

from directory_sync import services as sync_services


def test_the_audit_log_shows_numbers_left_to_right(admin_client, organization, admin_user):
    sync_services.sync_settings_update(
        organization=organization, actor=admin_user, default_phone_country="SA"
    )

    html = admin_client.get(reverse("directory_sync:audit_list")).content.decode()

    assert '<bdi dir="ltr">+966</bdi>' in html
