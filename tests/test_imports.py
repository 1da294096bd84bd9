"""The package's seams: one meaning per name, documented paths that import, imports that point one way.

docs/architecture.md gives the rules; these tests hold the code to them on every run of ``make test``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

import torchsmith as ts

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "torchsmith"

# Function-level imports are for optional or heavy dependencies only (docs/architecture.md); a torchsmith
# module imported inside a function would hide a cycle from anyone reading the module's head.
OPTIONAL = {"onnx", "onnxruntime", "onnxscript", "matplotlib", "transformers", "timm", "torchvision", "IPython",
            "PIL", "grandalf", "sklearn", "tensorboard", "safetensors", "sympy", "torch", "rich", "numpy"}


def _layers() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    return [[name.strip(" ()") for name in re.split(r"[|:]", row)] for row in layers]


def test_no_public_function_shares_its_name_with_a_module() -> None:
    functions = [n for n in ts.__all__ if inspect.isfunction(getattr(ts, n))]
    assert {"check", "summary", "capture", "export"} <= set(functions)
    clashes = [n for n in functions if importlib.util.find_spec(f"torchsmith.{n}") is not None]
    assert clashes == [], f"torchsmith.{clashes[0]} is both a function and a module"


def test_the_facade_exports_what_it_lists() -> None:
    missing = [n for n in ts.__all__ if not hasattr(ts, n)]
    assert missing == []


def test_import_contracts_hold() -> None:
    """lint-imports: the layer order of pyproject.toml, function-level imports included."""
    exe = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_every_module_has_a_layer() -> None:
    named = {name for row in _layers() for name in row}
    top = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
           if (p.suffix == ".py" and p.stem not in ("__init__", "__main__")) or (p / "__init__.py").is_file()}
    assert top - named == set(), f"modules without a layer in pyproject.toml: {sorted(top - named)}"
    assert named - top == set(), f"layers naming no module: {sorted(named - top)}"


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_no_import_cycle_in_the_package() -> None:
    graph = grimp.build_graph("torchsmith", exclude_type_checking_imports=True)
    cycles = _cycles(graph)
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def _function_level_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Import):
                found += [(node.lineno, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def test_function_level_imports_are_only_for_optional_dependencies() -> None:
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        for line, name in _function_level_imports(path):
            if name.startswith(".") or name.split(".")[0] not in OPTIONAL:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert bad == [], "function-level imports of non-optional modules:\n" + "\n".join(bad)


def test_a_function_level_import_cannot_bypass_the_contracts(tmp_path: Path) -> None:
    """The contract sees imports inside functions: an upward one written into a copy of the package breaks it."""
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(SRC, copy / "torchsmith", ignore=shutil.ignore_patterns("__pycache__"))
    errors = copy / "torchsmith" / "errors.py"
    errors.write_text(errors.read_text() + "\n\ndef _sneaky():\n    from torchsmith.train import fit\n    return fit\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    exe = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(exe), "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"})
    assert done.returncode != 0, done.stdout[-2000:]
    assert "torchsmith.errors -> torchsmith.train" in done.stdout


# --- documented paths --------------------------------------------------------------------------------

# Dotted names that are not Python paths: the format tag written into a training-state file.
_NOT_PATHS = {"torchsmith.training_state"}
_DOTTED = re.compile(r"(?<![\w./-])torchsmith(?:\.[A-Za-z_]\w*)+")
_FROM_IMPORT = re.compile(r"^\s*from (torchsmith(?:\.\w+)*) import \(?([\w, ]+)\)?", re.M)
_IMPORT = re.compile(r"^\s*import (torchsmith(?:\.\w+)+)", re.M)


def _documents() -> list[Path]:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").glob("*.py"))]
    return docs + sorted(SRC.rglob("*.py"))


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        try:
            obj: object = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is not None and not name.startswith(e.name):
                raise
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def _documented_paths() -> dict[str, str]:
    """Every ``torchsmith.a.b`` named in the README, docs, examples and docstrings, with where it is named."""
    paths: dict[str, str] = {}
    for doc in _documents():
        text = doc.read_text()
        for m in _DOTTED.finditer(text):
            dotted = m.group(0).rstrip(".")
            if text[m.end():m.end() + 1] in ("/", "-") or dotted.endswith((".py", ".md")) or dotted in _NOT_PATHS:
                continue  # a file path or a CLI name, not a Python path
            paths.setdefault(dotted, f"{doc.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}")
        for m in _FROM_IMPORT.finditer(text):
            for name in (n.split(" as ")[0].strip() for n in m.group(2).split(",")):
                if name and name != "annotations":
                    paths.setdefault(f"{m.group(1)}.{name}", f"{doc.relative_to(ROOT)}")
        for m in _IMPORT.finditer(text):
            paths.setdefault(m.group(1), f"{doc.relative_to(ROOT)}")
    return paths


def test_documentation_names_paths() -> None:
    paths = _documented_paths()
    assert "torchsmith.checkpoint.save" in paths or "torchsmith.save" in paths
    assert len(paths) > 20


@pytest.mark.parametrize("dotted", sorted(_documented_paths()))
def test_every_documented_path_imports_as_written(dotted: str) -> None:
    where = _documented_paths()[dotted]
    try:
        _resolve(dotted)
    except (ImportError, AttributeError) as e:
        pytest.fail(f"{where} names {dotted}, which does not import: {e}")


def test_only_the_cli_imports_the_facade() -> None:
    """Library code imports the module that holds a name; ``from torchsmith import X`` is for users and the CLI."""
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] in ("cli", "__init__.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(a.name == "torchsmith" for a in node.names):
                bad.append(f"{rel}:{node.lineno}")
            elif isinstance(node, ast.ImportFrom) and node.module == "torchsmith" and node.level == 0:
                if any(importlib.util.find_spec(f"torchsmith.{a.name}") is None for a in node.names):
                    bad.append(f"{rel}:{node.lineno}")
    assert bad == [], "library modules importing the facade: " + ", ".join(bad)


# --- what each everyday path imports (issue 19) ---------------------------------------------------------

#: Imported by none of the everyday paths below: seconds of import time, and memory, none of them needs.
_HEAVY = ("torch._dynamo", "torch._inductor", "sympy", "torch.fx.experimental.symbolic_shapes")

_LOADED = """
import json, sys
import torch
before = set(sys.modules)
{code}
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _loaded(code: str) -> set[str]:
    """The modules that ``code`` imports in a fresh process on top of a bare ``import torch``."""
    done = subprocess.run([sys.executable, "-c", _LOADED.format(code=code)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _under(modules: set[str], *roots: str) -> list[str]:
    return sorted(m for m in modules if any(m == r or m.startswith(r + ".") for r in roots))


def test_import_torchsmith_loads_only_the_facade_and_the_registry() -> None:
    loaded = _loaded("import torchsmith")
    assert _under(loaded, *_HEAVY, "rich", "yaml", "torchsmith._summary", "torchsmith._check", "torchsmith._export",
                  "torchsmith._capture", "torchsmith.train", "torchsmith.cli", "torchsmith.demo",
                  "torchsmith.models", "torchsmith.library", "torchsmith.spec", "torchsmith.init") == []
    assert "torchsmith.registry" in loaded


@pytest.mark.parametrize("code", ["ts.list_models()", "ts.create_model('lenet')", "ts.build_file",
                                  "ts.registry.source_of('hf:bert')", "ts.resolve_model('lenet')"])
def test_the_zoo_and_the_library_register_before_the_first_lookup(code: str) -> None:
    loaded = _loaded(f"import torchsmith as ts\n{code}")
    assert {"torchsmith.models", "torchsmith.library"} <= loaded


def test_a_spec_file_builds_with_the_zoos_layer_types_in_a_fresh_process(tmp_path: Path) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text("input: [4, 8, 8]\nlayers:\n  - basic_block: {out: 8, stride: 2}\n")
    code = f"from torchsmith.resolve import resolve_model\nresolve_model({str(spec)!r})"
    assert "torchsmith.models" in _loaded(code)


@pytest.mark.parametrize("name", ["lenet", "resnet20"])
def test_a_small_summary_imports_neither_dynamo_nor_sympy_nor_rich(name: str) -> None:
    loaded = _loaded(f"import torchsmith as ts\ns = ts.summary({name!r})\nstr(s)\nassert s.forward_flops > 0")
    assert _under(loaded, *_HEAVY, "rich", "torchsmith._check", "torchsmith._export", "torchsmith.train") == []


def test_a_resnet50_summary_imports_no_dynamo() -> None:
    # Past the CPU stand-in's bounds: the trace and the exact activations both run on meta. torch's Python meta
    # kernels import sympy, but fake tensors (which import torch._dynamo) are not needed for a convnet.
    loaded = _loaded("import torchsmith as ts\ns = ts.summary('resnet50')\nassert s.memory.activations > 0")
    assert _under(loaded, "torch._dynamo", "torch._inductor", "rich", "torchsmith._check", "torchsmith.train") == []


def test_torchsmith_show_lenet_imports_no_dynamo() -> None:
    loaded = _loaded("from torchsmith.cli import main\nmain(['show', 'lenet'], prog_name='torchsmith', "
                     "standalone_mode=False)")
    assert _under(loaded, *_HEAVY, "torchsmith._check", "torchsmith._export", "torchsmith.train") == []
    # The memory engine (torch.export, the distributed tools) and rich (a pipe gets text) are --memory's and a
    # terminal's alone.
    assert _under(loaded, "torchsmith._memory", "torch.export", "torch.distributed._tools", "rich") == []
    assert "torchsmith.cli.show_cmd" in loaded


@pytest.mark.parametrize("args", [["--help"], ["models"]])
def test_help_and_models_import_no_other_command(args: list[str]) -> None:
    loaded = _loaded(f"from torchsmith.cli import main\nmain({args!r}, prog_name='torchsmith', standalone_mode=False)")
    commands = _under(loaded, "torchsmith.cli")
    assert set(commands) <= {"torchsmith.cli", "torchsmith.cli.models_cmd"}, commands
    assert _under(loaded, *_HEAVY, "rich", "torchsmith._summary") == []


def test_the_facade_table_types_and_all_agree() -> None:
    """Each public name is in ``_EXPORTS`` under the module that holds it, imported for type checkers, in __all__."""
    tree = ast.parse((SRC / "__init__.py").read_text())
    guarded = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    typed = {(node.module, a.name) for node in ast.walk(guarded) if isinstance(node, ast.ImportFrom)
             for a in node.names}
    table = {(module, name) for module, names in ts._EXPORTS.items() for name in names}
    assert typed == table
    assert set(ts.__all__) == {name for _, name in table} | {"__version__"}
    for module, name in sorted(table):
        assert getattr(importlib.import_module(module), name) is getattr(ts, name), name
    assert set(ts.__all__) <= set(dir(ts))


def test_every_cli_command_is_one_table_line_with_its_own_help() -> None:
    from torchsmith.cli import COMMANDS, main

    for name, (module, summary) in COMMANDS.items():
        command = importlib.import_module(f"torchsmith.cli.{module}").command
        assert command.name == name and main.commands[name] is command
        assert inspect.cleandoc(command.help or "").split("\n\n")[0].replace("\n", " ") == summary, name
