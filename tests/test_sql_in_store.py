"""Hand-written SQL lives in the storage modules only (issue 14).

Services, views and the SCIM layer call ``directory_sync.store`` (and ``members`` its own
``members.bulk_update``, since ``members`` never imports ``directory_sync``); migrations
freeze their SQL. Any other product module that opens a cursor, executes a statement, builds
``RawSQL`` or calls ``QuerySet.extra()``/``.raw()`` fails this test, with the line to move.

The check reads every product module with :mod:`ast`: a call of ``.cursor()``, a call of
``.execute``/``.executemany`` with arguments (a Redis pipeline's ``execute()`` has none), a
call of ``.extra(...)``/``.raw(...)``, and any mention of ``RawSQL``.
"""

import ast
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PRODUCT_PACKAGES = ("beem_admin", "directory_sync", "members")
STORAGE = ("directory_sync/store/", "members/bulk_update.py")
SKIPPED_DIRS = {"migrations", "__pycache__"}


def _sql_sites(tree: ast.AST) -> list[tuple[int, str]]:
    sites = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            if name == "cursor" or name in ("extra", "raw"):
                sites.append((node.lineno, f".{name}()"))
            elif name in ("execute", "executemany") and (node.args or node.keywords):
                sites.append((node.lineno, f".{name}(...)"))
        elif isinstance(node, ast.Name) and node.id == "RawSQL":
            sites.append((node.lineno, "RawSQL"))
        elif isinstance(node, ast.alias) and node.name == "RawSQL":
            sites.append((getattr(node, "lineno", 0), "import RawSQL"))
    return sites


def test_raw_sql_only_in_storage_modules():
    found = []
    for package in PRODUCT_PACKAGES:
        for path in sorted((BASE_DIR / package).rglob("*.py")):
            relative = path.relative_to(BASE_DIR).as_posix()
            if SKIPPED_DIRS.intersection(path.relative_to(BASE_DIR).parts):
                continue
            if relative.startswith(STORAGE):
                continue
            tree = ast.parse(path.read_text(), filename=relative)
            found += [f"{relative}:{line}: {what}" for line, what in _sql_sites(tree)]
    assert not found, "SQL outside directory_sync/store (move it there):\n" + "\n".join(found)


def test_the_check_sees_each_kind_of_sql_site():
    source = (
        "from django.db.models.expressions import RawSQL\n"
        "with connection.cursor() as cursor:\n"
        "    cursor.execute('SELECT 1')\n"
        "Model.objects.extra(where=['1'])\n"
        "Model.objects.raw('SELECT 1')\n"
        "pipe.execute()\n"
    )
    kinds = [what for _line, what in _sql_sites(ast.parse(source))]
    assert sorted(kinds) == sorted(
        ["import RawSQL", ".cursor()", ".execute(...)", ".extra()", ".raw()"]
    )


def test_store_sits_below_the_services_and_scim():
    """``store`` imports models (its own package, Django, ``members.models``) and the
    per-process state registry only: a service or ``scim`` module imported by the storage
    would make the layers circular again. And the record services never reach up into
    ``scim``."""
    from tests.test_import_cycles import import_graph

    graph = import_graph()
    allowed = {"directory_sync.models", "directory_sync.process_state", "members.models"}
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module.startswith("directory_sync.store")
        for target in targets
        if target not in allowed and not target.startswith("directory_sync.store")
    )
    assert not upward, "\n".join(upward)
    assert not [t for t in graph["directory_sync.records"] if t.startswith("directory_sync.scim")]
