"""Entra ID's default attribute mappings for a non-gallery ("customappsso"/"scim") application.

What a new enterprise application created with "Integrate any other application you don't
find in the gallery" maps out of the box (Microsoft Learn: "Tutorial: Develop and plan
provisioning for a SCIM endpoint in Microsoft Entra ID", default user and group attribute
tables; "Tutorial - Customize user provisioning attribute-mappings"). Admins who keep these
defaults (issue 15: trimming them is optional) send every one of these on create and update.

Each row: (SCIM attribute as Entra writes the path, Entra source attribute or expression,
an example value). ``MANAGER`` rows carry the SCIM id of the manager, filled in by the test.
"""

import re

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MANAGER = object()

USER_MAPPINGS: list[tuple[str, str, object]] = [
    ("userName", "userPrincipalName", "alice.wong@contoso.com"),
    ("active", 'Switch([IsSoftDeleted], , "False", "True", "True", "False")', "True"),
    ("displayName", "displayName", "Alice Wong"),
    ("title", "jobTitle", "Engineer"),
    ('emails[type eq "work"].value', "mail", "alice.wong@contoso.com"),
    ("preferredLanguage", "preferredLanguage", "en-US"),
    ("name.givenName", "givenName", "Alice"),
    ("name.familyName", "surname", "Wong"),
    ("name.formatted", 'Join(" ", [givenName], [surname])', "Alice Wong"),
    ('addresses[type eq "work"].formatted', "physicalDeliveryOfficeName", "Building 4"),
    ('addresses[type eq "work"].streetAddress', "streetAddress", "1 King Fahd Road"),
    ('addresses[type eq "work"].locality', "city", "Riyadh"),
    ('addresses[type eq "work"].region', "state", "Riyadh Province"),
    ('addresses[type eq "work"].postalCode', "postalCode", "12211"),
    ('addresses[type eq "work"].country', "country", "SA"),
    ('phoneNumbers[type eq "work"].value', "telephoneNumber", "+966112345678"),
    ('phoneNumbers[type eq "mobile"].value', "mobile", "+966512345678"),
    ('phoneNumbers[type eq "fax"].value', "facsimileTelephoneNumber", "+966112345679"),
    ("externalId", "mailNickname", "alice.wong"),
    (f"{ENTERPRISE}:employeeNumber", "employeeId", "E-1001"),
    (f"{ENTERPRISE}:department", "department", "Platform"),
    (f"{ENTERPRISE}:manager", "manager", MANAGER),
]

# Rows of Microsoft's documented default table spelled as it spells them (capitalised
# sub-attributes; proxyAddresses are "SMTP:"-prefixed, not plain addresses).
DOCUMENTED_SPELLINGS: list[tuple[str, str, object]] = [
    ('emails[type eq "other"].Value', "proxyAddresses", "SMTP:alice.wong@contoso.com"),
    ('addresses[type eq "other"].Formatted', "physicalDeliveryOfficeName", "Building 4"),
]

GROUP_MAPPINGS: list[tuple[str, str]] = [
    ("displayName", "displayName"),
    ("externalId", "objectId"),
    ("members", "members"),
]

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
_FILTER_PATH = re.compile(r'^(?P<attr>\w+)\[type eq "(?P<type>\w+)"\]\.(?P<sub>\w+)$')


def set_attribute(body: dict, path: str, value: object) -> None:
    """Put ``value`` at ``path`` of a resource body, building entries as Entra does."""
    if path.startswith(f"{ENTERPRISE}:"):
        key = path[len(ENTERPRISE) + 1 :]
        body.setdefault(ENTERPRISE, {})[key] = {"value": value} if key == "manager" else value
        return
    match = _FILTER_PATH.match(path)
    if match:
        entries = body.setdefault(match["attr"], [])
        entry = next((e for e in entries if e.get("type") == match["type"]), None)
        if entry is None:
            entry = {"type": match["type"]}
            if match["attr"] == "emails" and match["type"] == "work":
                entry["primary"] = True
            entries.append(entry)
        entry[match["sub"]] = value
    elif "." in path:
        attribute, sub = path.split(".", 1)
        body.setdefault(attribute, {})[sub] = value
    else:
        body[path] = value


def user_post_body(rows: list[tuple[str, str, object]], manager_id: str | None = None) -> dict:
    """Entra's POST /Users body for ``rows`` (the manager is set when ``manager_id`` is given)."""
    body: dict = {"schemas": [USER_SCHEMA, ENTERPRISE]}
    for path, _source, value in rows:
        if value is MANAGER:
            if manager_id is None:
                continue
            value = manager_id
        set_attribute(body, path, value)
    return body


def value_at(resource: dict, path: str):
    """The value a GET answers at ``path`` (sub-attribute names compared case-insensitively)."""
    if path.startswith(f"{ENTERPRISE}:"):
        value = (resource.get(ENTERPRISE) or {}).get(path[len(ENTERPRISE) + 1 :])
        return value.get("value") if isinstance(value, dict) else value
    match = _FILTER_PATH.match(path)
    if match:
        for entry in resource.get(match["attr"]) or []:
            if entry.get("type") == match["type"]:
                return {k.lower(): v for k, v in entry.items()}.get(match["sub"].lower())
        return None
    if "." in path:
        attribute, sub = path.split(".", 1)
        return (resource.get(attribute) or {}).get(sub)
    return resource.get(path)
