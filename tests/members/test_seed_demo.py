"""`make run PORT=…` and `manage.py seed_demo`: the printed address is the one served."""

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


def seed_demo_output(**options) -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out, **options)
    return out.getvalue()


def test_seed_demo_prints_the_given_port(db):
    assert "ready at http://127.0.0.1:8123/" in seed_demo_output(port=8123)


def test_seed_demo_prints_port_8000_by_default(db):
    assert "ready at http://127.0.0.1:8000/" in seed_demo_output()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("args, port", [([], "8000"), (["PORT=8123"], "8123")])
def test_make_run_passes_its_port_to_seed_demo_and_the_server(args, port):
    commands = subprocess.run(
        ["make", "--dry-run", "run", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout

    assert f"manage.py seed_demo --port {port}\n" in commands
    assert f"manage.py runserver 127.0.0.1:{port}\n" in commands
