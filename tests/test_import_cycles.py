"""The product's import graph has no cycles, and ``members`` never imports ``directory_sync``
(issue 14).

Every ``import`` statement of every product module is read with :mod:`ast` — at module level,
inside functions and under ``if TYPE_CHECKING`` alike: an import deferred into a function
hides a cycle from Python's loader but not from a reader, who still cannot understand one
module without the other. Imports are resolved to project modules: relative imports,
``from package import module`` (to the submodule when one exists by that name, otherwise to
the package's ``__init__``) and dotted ``import a.b.c``.

A package's ``__init__`` re-exporting its submodules (``directory_sync/engine/__init__.py``)
is the natural facade and counts as an ordinary edge ``package → submodule``; it becomes a
cycle only when a submodule imports back through the facade, which is what this test
forbids. Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``, but no edge is
drawn for that implicit step: it would turn every facade into a false cycle
(``engine → engine.drain → engine``).

The check is ``ast`` only (no grimp/import-linter dependency for ~100 lines of graph code).
"""

import ast
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PRODUCT_PACKAGES = ("beem_admin", "directory_sync", "members")
SKIPPED_DIRS = {"migrations", "__pycache__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(BASE_DIR).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_modules() -> dict[str, Path]:
    modules = {}
    for package in PRODUCT_PACKAGES:
        for path in sorted((BASE_DIR / package).rglob("*.py")):
            if SKIPPED_DIRS.intersection(path.relative_to(BASE_DIR).parts):
                continue
            modules[_module_name(path)] = path
    return modules


def _project_module(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of a dotted name that is a product module (``a.b.func`` → ``a.b``)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def module_imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every product module ``name`` imports, wherever the import statement sits."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                targets.add(_project_module(alias.name, modules))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                # ``from pkg import module`` imports the submodule, ``from pkg import name``
                # the package itself.
                submodule = f"{source}.{alias.name}"
                targets.add(submodule if submodule in modules else _project_module(source, modules))
    targets.discard(None)
    targets.discard(name)
    return targets


def import_graph() -> dict[str, set[str]]:
    modules = product_modules()
    return {name: module_imports(name, path, modules) for name, path in modules.items()}


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative, so deep graphs do not hit the recursion limit)."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = lowlink[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = lowlink[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    lowlink[node] = min(lowlink[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                lowlink[parent] = min(lowlink[parent], lowlink[node])
            if lowlink[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _describe(component: list[str], graph: dict[str, set[str]]) -> str:
    members = set(component)
    edges = [f"    {a} -> {b}" for a in component for b in sorted(graph[a] & members)]
    return "\n".join([" / ".join(component), *edges])


def test_the_graph_resolves_relative_function_level_and_submodule_imports():
    graph = import_graph()

    # A relative import to a submodule of a package (engine/__init__ -> engine.drain), an
    # absolute import of another app, and the package facade itself are all edges.
    assert "directory_sync.engine.drain" in graph["directory_sync.engine"]
    assert "members.models" in graph["directory_sync.models"]
    assert "directory_sync.engine" in graph["directory_sync.tasks"]


def test_cycles_are_found_and_acyclic_chains_are_not():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}

    components = strongly_connected_components(graph)

    assert sorted(components) == [["a", "b", "c"], ["d"], ["e"]]


def test_there_are_no_import_cycles():
    graph = import_graph()

    cycles = [c for c in strongly_connected_components(graph) if len(c) > 1]

    assert not cycles, "import cycles:\n" + "\n".join(_describe(c, graph) for c in cycles)


def test_members_never_imports_directory_sync():
    # members is the lower app: directory_sync drives it through its services and hooks into
    # its pages through members.directory, never the other way round.
    graph = import_graph()

    offenders = sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        if source.split(".")[0] == "members"
        for target in targets
        if target.split(".")[0] == "directory_sync"
    )

    assert not offenders, offenders
