"""The branded error pages (404, 403, 500, the login lock-out's 429), the favicon and the login
form's wording, in English and Arabic, over HTTP."""

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.urls import path

from beem_admin.urls import urlpatterns as project_urlpatterns


def boom(request):
    raise RuntimeError("a bug")


# The project's URLs plus one view that fails (pytest.mark.urls below).
urlpatterns = [path("boom/", boom), *project_urlpatterns]

IN_ENGLISH = {
    404: ("Page not found", "There is nothing at this address."),
    403: ("Access denied", "Only administrators of an organization"),
    500: ("Something went wrong", "Beem could not complete this request"),
    429: ("Too many failed log-ins", "paused for 15 minutes"),
}
IN_ARABIC = {
    404: ("الصفحة غير موجودة", "لا يوجد شيء على هذا العنوان."),
    403: ("تم رفض الوصول", "لا يستطيع استخدام حزمة إدارة Beem إلا"),
    500: ("حدث خطأ ما", "تعذّر على Beem إكمال هذا الطلب"),
    429: ("محاولات دخول فاشلة كثيرة", "15 دقيقة"),
}


@pytest.fixture
def in_language(client):
    def choose(language: str):
        client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
        return client

    return choose


def error_page(client, status: int, admin_user):
    if status == 404:
        client.force_login(admin_user)
        return client.get("/members/no-such-page/")
    if status == 403:
        user = get_user_model().objects.create_user("stray", password="x" * 12, is_staff=True)
        client.force_login(user)
        return client.get("/members/")
    if status == 500:
        client.raise_request_exception = False
        return client.get("/boom/")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = client.post("/login/", {"username": "admin@acme", "password": "wrong"})
    return response


@pytest.fixture
def axes_on(settings):
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 5
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("language, texts", [("en", IN_ENGLISH), ("ar", IN_ARABIC)])
@pytest.mark.parametrize("status", [404, 403, 500, 429])
def test_error_pages_are_branded_and_translated(
    status, language, texts, in_language, axes_on, admin_user
):
    response = error_page(in_language(language), status, admin_user)

    body = response.content.decode()
    assert response.status_code == status
    assert f'<html lang="{language}" dir="{"rtl" if language == "ar" else "ltr"}">' in body
    heading, sentence = texts[status]
    assert f"<title>{heading} · " in body
    assert sentence in body
    assert 'rel="icon"' in body  # base.html


@pytest.mark.urls(__name__)
def test_the_500_page_renders_without_request_context_or_database(client, db):
    from django.template import loader

    # django.views.defaults.server_error renders it so: no request, no context processors.
    page = loader.get_template("500.html").render()

    assert "Something went wrong" in page
    assert 'name="language"' not in page  # the language form needs the request's CSRF token


def test_the_lockout_page_says_when_the_lock_is_permanent(rf, settings):
    from beem_admin.views import login_locked_out

    settings.AXES_COOLOFF_TIME = None

    response = login_locked_out(rf.post("/login/"))

    assert response.status_code == 429
    assert "is blocked after too many wrong passwords" in response.content.decode()


def test_the_login_form_asks_for_the_email(client, db):
    body = client.get("/login/").content.decode()

    assert '<label for="id_username">Email</label>' in body
    assert "Username" not in body


def test_the_login_form_asks_for_the_email_in_arabic(in_language, db):
    body = in_language("ar").get("/login/").content.decode()

    assert '<label for="id_username">البريد الإلكتروني</label>' in body


def test_buttons_and_badges_do_not_wrap(client, db):
    body = client.get("/login/").content.decode()
    style = body[body.index("<style>") : body.index("</style>")]

    for rule in (".badge {", "button, .button {"):
        declarations = style[style.index(rule) : style.index("}", style.index(rule))]
        assert "white-space: nowrap" in declarations, rule
