"""The import graph of nmt/ (every import statement, those inside functions included) runs down the layers that
docs/architecture.md draws: a module imports only from its own package or from a lower layer, and no two files
import each other, directly or round a circle."""
import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path, root: Path) -> str:
    """nmt/decoding/beam.py -> nmt.decoding.beam, relative to the folder that holds nmt/."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.AST, package: str) -> list[str]:
    """Dotted names an import statement may refer to (module, or module.attribute)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        return [base] + [f"{base}.{a.name}" for a in node.names]
    return []


def file_graph(root: Path = ROOT / "nmt") -> dict[str, set[str]]:
    """module -> the nmt modules it imports (a name resolves to the longest module prefix)."""
    modules = {module_name(p, root.parent): p for p in root.rglob("*.py")}
    graph = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for target in imported(node, package):
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def unit(module: str) -> str:
    """The layer unit of a module: its subpackage (nmt.decoding) or top-level module (nmt.scoring); the
    package root nmt/__init__.py is "nmt.__init__"."""
    return "nmt.__init__" if module == "nmt" else ".".join(module.split(".")[:2])


def documented_layers() -> dict[str, int]:
    """docs/architecture.md's layer diagram (top line = top layer) -> {unit: rank}, 0 = the bottom."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- layers -->\n```\n(.*?)```", text, re.S).group(1)
    rows = [line.split() for line in block.strip().splitlines()]
    return {f"nmt.{name}": len(rows) - 1 - i for i, row in enumerate(rows) for name in row}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, or None (depth-first search with colours)."""
    colour, stack = {}, []

    def visit(n):
        colour[n] = "grey"
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if colour.get(m) == "grey":
                return stack[stack.index(m):] + [m]
            if m not in colour and (found := visit(m)):
                return found
        stack.pop()
        colour[n] = "black"
        return None
    for n in sorted(graph):
        if n not in colour and (found := visit(n)):
            return found
    return None


def test_every_package_and_module_of_nmt_has_a_documented_layer():
    layers = documented_layers()
    units = {unit(m) for m in file_graph()} | {unit(m) for targets in file_graph().values() for m in targets}
    assert units - set(layers) == set(), "add these to the layer diagram in docs/architecture.md"
    assert set(layers) - units == set(), "the diagram names packages that do not exist"


def test_imports_run_down_the_documented_layers():
    layers = documented_layers()
    upward = sorted(f"{a} -> {b}" for a, targets in file_graph().items() for b in targets
                    if unit(a) != unit(b) and layers[unit(b)] >= layers[unit(a)])
    assert upward == [], "imports up or across a layer (docs/architecture.md draws the allowed direction)"


def test_no_circle_of_imports_between_files_or_packages():
    graph = file_graph()
    assert cycle(graph) is None
    packages = defaultdict(set)
    for a, targets in graph.items():
        packages[unit(a)] |= {unit(b) for b in targets if unit(b) != unit(a)}
    assert cycle(packages) is None


def test_the_checks_see_imports_inside_functions_and_find_a_circle(tmp_path):
    """The guard itself: a lazy import inside a function counts, and a two-file circle is found."""
    pkg = tmp_path / "nmt" / "a"
    pkg.mkdir(parents=True)
    (tmp_path / "nmt" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "x.py").write_text("def f():\n    from nmt.a.y import g\n")
    (pkg / "y.py").write_text("from nmt.a import x\n")
    graph = file_graph(tmp_path / "nmt")
    assert graph["nmt.a.x"] == {"nmt.a.y"} and "nmt.a.x" in graph["nmt.a.y"]
    assert cycle(graph) in (["nmt.a.x", "nmt.a.y", "nmt.a.x"], ["nmt.a.y", "nmt.a.x", "nmt.a.y"])


# Where a Hydra config may live (docs/architecture.md, "One config boundary"): the entry points type it once,
# and models/build.py is the one place YAML becomes objects.
CONFIG_BOUNDARY = ("nmt.cli", "nmt.api", "nmt.models.build")


def config_importers(root: Path = ROOT / "nmt") -> set[str]:
    """The modules of nmt/ with an import of omegaconf or hydra (inside functions too)."""
    found = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if any(name.split(".")[0] in ("omegaconf", "hydra") for name in imported(node, "")):
                found.add(module_name(path, root.parent))
    return found


def test_only_the_entry_points_and_build_touch_the_hydra_config():
    importers = config_importers()
    outside = sorted(m for m in importers if not any(m == b or m.startswith(b + ".") for b in CONFIG_BOUNDARY))
    assert outside == [], f"{outside} import omegaconf/hydra: take typed settings or a RunConfig instead"
    assert "nmt.models.build" in importers and "nmt.cli.train" in importers  # the scan sees imports
