"""Import boundaries of ``masra/``, read from the source (AST only: nothing is imported).

- **No import cycle** between the modules of ``masra/``, counting every import: at module level,
  inside functions (lazy imports) and under ``if TYPE_CHECKING:`` (the lazy package ``__init__``
  files, ``masra.grounding`` and ``masra.fixture``, declare there what their ``__getattr__`` loads).
  A lazy cycle works at run time but still makes two modules one unit that cannot be read, tested or
  moved apart. An import's edge goes to the module it names (``from pkg import mod`` to ``pkg.mod``
  when that is a module, else to ``pkg``); a package is not counted as imported by its submodules.
- **No import from a lower layer into a higher one**, every import counted as above. The layers of
  ``masra/``, lowest first (:data:`LAYERS`); a unit (a subpackage, or a top-level module) imports
  only units of lower layers, never one of its own layer or above:

  1. ``fsops``, ``runlock``, ``hub``, ``video_io``: file, lock, model-hub and video-decoding helpers;
  2. ``text_encoder`` (loads its models through ``hub``);
  3. ``priors`` (the contract between the stages), ``datasets`` (cards, readers, the feature store);
  4. ``features`` (video feature extractors), ``prior_gen`` (stage 1);
  5. ``grounding`` (stage 2);
  6. ``fixture`` (builds the synthetic worlds with both stages' tools), ``viz`` (pictures of results);
  7. ``app`` (the browser app);
  8. ``pipelines`` (the ``masra`` CLI).

  Stage 2 may sit above stage 1 in this order; it still never imports it (below).
- ``masra.grounding`` (stage 2) never imports ``masra.prior_gen`` (stage 1), not even lazily.
- ``masra.priors`` (the contract between the stages) imports only the standard library, numpy,
  pyarrow and itself.
- ``masra.prior_gen`` reaches the schemas and shards only through ``masra.priors``: it has no schema
  or shard module of its own, builds no Arrow schema and writes no Parquet file directly.

The checkers (:func:`module_imports`, :func:`import_cycles`, :func:`layer_violations`) are pure
functions of source text, so the tests also run them on sources with an injected bad import.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

MASRA = Path(__file__).resolve().parents[1] / "masra"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("fsops", "runlock", "hub", "video_io"),
    ("text_encoder",),
    ("priors", "datasets"),
    ("features", "prior_gen"),
    ("grounding",),
    ("fixture", "viz"),
    ("app",),
    ("pipelines",),
)
"""The units of ``masra/`` (subpackages and top-level modules), lowest layer first (module docstring)."""

# What stage 1 must take from masra.priors rather than define or reach elsewhere.
CONTRACT_NAMES = {
    "PRIOR_SCHEMA",
    "EMBED_SCHEMA",
    "SCHEMA_VERSION",
    "EVENT_TYPE",
    "STATUSES",
    "SOURCES",
    "check_schema",
    "rows_to_table",
    "write_table_atomic",
    "shard_paths",
    "read_shards",
    "PriorRun",
    "PriorTable",
    "read_prior_table",
}


@dataclass(frozen=True)
class Import:
    """One imported module: ``line``, the absolute ``target`` and the ``kind`` of import:
    ``module`` (runs when the importing module is imported), ``lazy`` (inside a function) or
    ``typing`` (under ``if TYPE_CHECKING:``)."""

    line: int
    target: str
    names: tuple[str, ...]
    kind: str


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(MASRA.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_imports(
    source: str, module: str, *, is_package: bool, known: frozenset[str] = frozenset()
) -> list[Import]:
    """Every import of ``source`` (the text of ``module``), at any depth, with its absolute target.

    Relative imports resolve against the module's package (``is_package``: ``module`` is a package's
    ``__init__``). ``from pkg import name`` targets ``pkg.name`` when that is in ``known`` (a module),
    else ``pkg``.
    """
    package = module if is_package else module.rpartition(".")[0]
    out: list[Import] = []

    def visit(node: ast.AST, kind: str) -> None:
        if isinstance(node, ast.Import):
            out.extend(Import(node.lineno, a.name, (), kind) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names = tuple(a.name for a in node.names)
            targets = {f"{base}.{n}" if f"{base}.{n}" in known else base for n in names}
            out.extend(Import(node.lineno, t, names, kind) for t in sorted(targets))
        for child in ast.iter_child_nodes(node):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, "lazy")
            elif (
                isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) and child in node.body
            ):
                visit(child, "typing" if kind == "module" else kind)
            else:
                visit(child, kind)

    visit(ast.parse(source), "module")
    return out


def tree_imports(sources: dict[str, tuple[str, bool]]) -> dict[str, list[Import]]:
    """``{module: its imports}`` for ``sources`` = ``{module: (source text, is_package)}``."""
    known = frozenset(sources)
    return {m: module_imports(src, m, is_package=pkg, known=known) for m, (src, pkg) in sources.items()}


def masra_sources() -> dict[str, tuple[str, bool]]:
    """The source of every module of ``masra/``."""
    return {
        _module_name(p): (p.read_text(encoding="utf-8"), p.name == "__init__.py") for p in MASRA.rglob("*.py")
    }


def import_cycles(imports: dict[str, list[Import]]) -> list[list[str]]:
    """The import cycles among the modules of ``imports`` (every kind of import counted): one cycle
    per strongly connected component, as a path ``[a, b, ..., a]``."""
    graph = {m: sorted({i.target for i in imps if i.target in imports}) for m, imps in imports.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_cycle_through(comp, graph) for comp in components]


def _cycle_through(component: list[str], graph: dict[str, list[str]]) -> list[str]:
    """A shortest cycle from the component's first module back to it, inside the component."""
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in graph[v]:
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w in members and w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def unit_of(module: str) -> str | None:
    """The layer unit of a ``masra`` module: ``masra.grounding.spans`` -> ``grounding``; None for
    ``masra`` itself and for modules outside the package."""
    parts = module.split(".")
    return parts[1] if parts[0] == "masra" and len(parts) > 1 else None


def layer_of(unit: str) -> int:
    """The index of ``unit``'s layer in :data:`LAYERS`."""
    for i, layer in enumerate(LAYERS):
        if unit in layer:
            return i
    raise KeyError(f"masra.{unit} is in no layer of LAYERS; place it there (and in the module docstring)")


def layer_violations(imports: dict[str, list[Import]]) -> list[str]:
    """``module:line: imports target (layer a -> layer b)`` for each import of a unit in the same or
    a higher layer than the importing module's (every kind of import counted)."""
    bad = []
    for module, imps in sorted(imports.items()):
        src = unit_of(module)
        for imp in imps:
            dst = unit_of(imp.target)
            if src is None or dst is None or src == dst:
                continue
            if layer_of(dst) >= layer_of(src):
                bad.append(
                    f"{module}:{imp.line}: {imp.kind} import of {imp.target} "
                    f"(masra.{src}, layer {layer_of(src) + 1}, imports masra.{dst}, layer {layer_of(dst) + 1})"
                )
    return bad


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) of every import in ``path``, at any depth."""
    source = path.read_text(encoding="utf-8")
    imps = module_imports(source, _module_name(path), is_package=path.name == "__init__.py")
    return [(i.line, i.target, list(i.names)) for i in imps]


def _files(package: str) -> list[Path]:
    files = sorted((MASRA / package).rglob("*.py"))
    assert files, f"no modules under masra/{package}"
    return files


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(MASRA.parent).as_posix()}:{line}"


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_module_names_resolve_relative_imports() -> None:
    """The helper itself: relative imports resolve against the right package."""
    assert _module_name(MASRA / "priors" / "__init__.py") == "masra.priors"
    assert _module_name(MASRA / "priors" / "table.py") == "masra.priors.table"
    found = {m for _, m, _ in _imports(MASRA / "priors" / "table.py")}
    assert "masra.priors.schema" in found and "pyarrow.parquet" in found


def test_grounding_never_imports_prior_gen() -> None:
    bad = [
        f"{_where(p, line)}: imports {mod}"
        for p in _files("grounding")
        for line, mod, names in _imports(p)
        if _within(mod, "masra.prior_gen") or (mod == "masra" and "prior_gen" in names)
    ]
    assert not bad, "stage 2 imports stage 1 (use masra.priors):\n" + "\n".join(bad)


def test_priors_imports_only_stdlib_numpy_pyarrow_and_itself() -> None:
    allowed_third_party = ("numpy", "pyarrow")
    bad = []
    for p in _files("priors"):
        for line, mod, _ in _imports(p):
            top = mod.split(".")[0]
            ok = _within(mod, "masra.priors") or top in sys.stdlib_module_names or top in allowed_third_party
            if not ok:
                bad.append(f"{_where(p, line)}: imports {mod}")
    assert not bad, "masra.priors must stay stdlib + numpy + pyarrow:\n" + "\n".join(bad)


@pytest.mark.parametrize("name", ["schema", "shards", "run", "table"])
def test_the_contract_modules_live_in_priors_only(name: str) -> None:
    assert (MASRA / "priors" / f"{name}.py").is_file()
    assert not (MASRA / "prior_gen" / f"{name}.py").exists(), f"masra/prior_gen/{name}.py is back"
    assert not (MASRA / "grounding" / "priors_io.py").exists()


def test_prior_gen_reaches_schemas_and_shards_only_through_priors() -> None:
    bad = []
    for p in _files("prior_gen"):
        tree = ast.parse(p.read_text(encoding="utf-8"), str(p))
        for line, mod, names in _imports(p):
            contract = CONTRACT_NAMES.intersection(names)
            if contract and not _within(mod, "masra.priors"):
                bad.append(f"{_where(p, line)}: takes {sorted(contract)} from {mod}, not masra.priors")
        for node in ast.walk(tree):
            # Defining a contract name (a schema, a shard writer) in stage 1.
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in CONTRACT_NAMES:
                bad.append(f"{_where(p, node.lineno)}: defines {node.name}")
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Name) and t.id in CONTRACT_NAMES:
                        bad.append(f"{_where(p, node.lineno)}: defines {t.id}")
            # Building an Arrow schema or writing Parquet directly.
            if (
                isinstance(node, ast.Attribute)
                and node.attr in {"schema", "write_table", "ParquetWriter"}
                and isinstance(node.value, ast.Name)
                and node.value.id in {"pa", "pq", "pyarrow"}
            ):
                bad.append(f"{_where(p, node.lineno)}: {node.value.id}.{node.attr} (use masra.priors)")
    assert not bad, "stage 1 must go through masra.priors for schemas and shards:\n" + "\n".join(bad)


def test_bench_uses_the_public_api_of_the_grounding_stage() -> None:
    """bench/ imports stage 2 through ``masra.grounding``'s public names (and the numpy-only metrics),
    and imports no private name from ``masra`` at all."""
    import masra.grounding

    public = set(masra.grounding.__all__)
    bench = MASRA.parent / "bench"
    problems = []
    for path in sorted(bench.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("masra"):
                continue
            where = f"bench/{path.name}:{node.lineno}"
            names = [a.name for a in node.names]
            problems += [f"{where}: private name {n}" for n in names if n.startswith("_")]
            if node.module == "masra.grounding":
                problems += [
                    f"{where}: {n} is not in masra.grounding.__all__" for n in names if n not in public
                ]
            elif _within(node.module or "", "masra.grounding") and node.module != "masra.grounding.metrics":
                problems.append(f"{where}: imports {node.module}; use masra.grounding's public names")
    assert not problems, "\n".join(problems)


# ---- no cycle, no climb ---------------------------------------------------------------------------------
def test_masra_has_no_import_cycle() -> None:
    cycles = import_cycles(tree_imports(masra_sources()))
    assert not cycles, "import cycles (lazy and TYPE_CHECKING imports count):\n" + "\n".join(
        " -> ".join(c) for c in cycles
    )


def test_no_import_climbs_to_a_higher_layer() -> None:
    bad = layer_violations(tree_imports(masra_sources()))
    assert not bad, "imports from a lower layer into a higher one (LAYERS, module docstring):\n" + "\n".join(
        bad
    )


def test_every_unit_of_masra_has_a_layer() -> None:
    units = {u for m in masra_sources() if (u := unit_of(m)) is not None}
    listed = [u for layer in LAYERS for u in layer]
    assert len(listed) == len(set(listed)), "a unit is in two layers"
    assert units == set(listed), (
        f"not placed: {sorted(units - set(listed))}; gone: {sorted(set(listed) - units)}"
    )


# ---- the checkers themselves: they must be able to fail -------------------------------------------------
def test_module_imports_knows_lazy_typing_and_relative_imports() -> None:
    src = (
        "from typing import TYPE_CHECKING\nimport masra.hub\nfrom . import card\n"
        "if TYPE_CHECKING:\n    from masra.priors.run import PriorRun\n"
        "def f():\n    from ..features import registry\n    return registry\n"
    )
    known = frozenset({"masra.datasets.card", "masra.features.registry"})
    found = {
        (i.target, i.kind) for i in module_imports(src, "masra.datasets.x", is_package=False, known=known)
    }
    assert {
        ("masra.hub", "module"),
        ("masra.datasets.card", "module"),
        ("masra.priors.run", "typing"),
        ("masra.features.registry", "lazy"),
    } <= found


def test_an_injected_lazy_cycle_is_found() -> None:
    sources = {
        "masra.a": ("import masra.b\n", False),
        "masra.b": ("def f():\n    from masra import c\n", False),
        "masra.c": ("from masra.a import thing\n", False),
        "masra.d": ("import masra.a\n", False),
    }
    assert import_cycles(tree_imports(sources)) == [["masra.a", "masra.b", "masra.c", "masra.a"]]
    sources["masra.c"] = ("import os\n", False)
    assert import_cycles(tree_imports(sources)) == []


def test_an_injected_cycle_in_the_real_tree_is_found() -> None:
    sources = masra_sources()
    src, pkg = sources["masra.grounding.config.train"]
    sources["masra.grounding.config.train"] = (
        src + "\ndef _f():\n    from masra.grounding.train import recipe\n",
        pkg,
    )
    cycles = import_cycles(tree_imports(sources))
    assert any("masra.grounding.train.recipe" in c and "masra.grounding.config.train" in c for c in cycles)


def test_an_injected_upward_import_is_found() -> None:
    """The import that once climbed: the dataset layer reaching up into masra.features for the extractor
    names. Put back into the real card module's source, lazily, it is reported."""
    sources = masra_sources()
    src, pkg = sources["masra.datasets.card"]
    injected = (
        src + "\n\ndef _names():\n    from masra.features.registry import EXTRACTORS\n    return EXTRACTORS\n"
    )
    sources["masra.datasets.card"] = (injected, pkg)
    bad = layer_violations(tree_imports(sources))
    assert len(bad) == 1 and bad[0].startswith("masra.datasets.card:")
    assert "lazy import of masra.features.registry" in bad[0] and "layer 3" in bad[0] and "layer 4" in bad[0]
    same_layer = {"masra.features.x": ("from masra.prior_gen import prompts\n", False)}
    assert layer_violations(tree_imports(same_layer)) == [
        "masra.features.x:1: module import of masra.prior_gen (masra.features, layer 4, imports "
        "masra.prior_gen, layer 4)"
    ]
