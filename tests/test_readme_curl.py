"""README's "Trying it with curl" block, run as written against a live server.

The block is the first new user's first SCIM cycle: it must work, and it must not touch the demo
organization's members (it used to reuse Sara's mobile number, so the cycle linked to Sara and
then deleted her). Only the four placeholder lines (server, Tenant URL, credentials) are replaced,
with what ``directory_sync activate`` prints.
"""

import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command

from members.models import Member, Resource

README = Path(__file__).resolve().parents[1] / "README.md"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def _curl_block() -> str:
    text = README.read_text()
    section = text.split("### Trying it with curl", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def _activate_demo(base_url: str) -> dict[str, str]:
    call_command("seed_demo", stdout=io.StringIO())
    out = io.StringIO()
    call_command("directory_sync", "activate", "--org", "demo", "--base-url", base_url, stdout=out)
    printed = dict(
        re.findall(r"^(Tenant URL|Client Identifier|Client Secret):\s+(\S+)$", out.getvalue(), re.M)
    )
    assert set(printed) == {"Tenant URL", "Client Identifier", "Client Secret"}, out.getvalue()
    return printed


def test_readme_curl_cycle_runs_and_leaves_the_demo_members_alone(live_server):
    printed = _activate_demo(live_server.url)
    demo = {m.display_name: (m.phone, m.email) for m in Member.objects.all()}
    handbooks = {r.name: r.owner_id for r in Resource.objects.all()}
    assert len(demo) == 3 and len(handbooks) == 3

    block = _curl_block()
    placeholders = {
        r"^BEEM=.*$": f"BEEM={live_server.url}",
        r"^TENANT=.*$": f"TENANT={printed['Tenant URL']}",
        r"^CLIENT_ID=.*$": (
            f"CLIENT_ID='{printed['Client Identifier']}'; "
            f"CLIENT_SECRET='{printed['Client Secret']}'"
        ),
    }
    for pattern, line in placeholders.items():
        block, n = re.subn(pattern, line, block, count=1, flags=re.M)
        assert n == 1, f"README curl block lost its {pattern} line"

    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # Both DELETEs answered 204, the group PATCH 204; the final unauthenticated call 401.
    # (-w "%{http_code}" follows the previous JSON body on its line.)
    assert re.findall(r"(?:^|[}\]])(\d{3})$", out, re.M) == ["204", "204", "204"], out
    assert "HTTP/1.1 401" in out and 'WWW-Authenticate: Bearer realm="beem-scim"' in out, out
    assert '"userName": "ada@contoso.example"' in out or '"userName":"ada@contoso.example"' in out

    # The demo's members and their handbooks are exactly as before; Ada was a new member.
    after = {
        m.display_name: (m.phone, m.email) for m in Member.objects.all() if m.display_name in demo
    }
    assert after == demo
    assert {r.name: r.owner_id for r in Resource.objects.all()} == handbooks
    assert (
        not Member.objects.filter(phone="+966555010101")
        .exclude(display_name__startswith="Ada")
        .exists()
    )
