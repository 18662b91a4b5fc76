"""Import boundaries between the stages, read from the source (AST only: nothing is imported).

- ``masra.grounding`` (stage 2) never imports ``masra.prior_gen`` (stage 1), not even lazily.
- ``masra.priors`` (the contract between the stages) imports only the standard library, numpy,
  pyarrow and itself.
- ``masra.prior_gen`` reaches the schemas and shards only through ``masra.priors``: it has no schema
  or shard module of its own, builds no Arrow schema and writes no Parquet file directly.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

MASRA = Path(__file__).resolve().parents[1] / "masra"

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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(MASRA.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) of every import in ``path``, at any depth."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            out.append((node.lineno, base, [a.name for a in node.names]))
    return out


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
