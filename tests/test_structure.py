"""The package's shape: no import cycles, no import from a lower layer up, each fingerprint
family's code named only inside its own folder (the registry and the facade reach it by name),
short functions, registered classes that document themselves, no pointers outside the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "modelprint"

# Lowest first. A module may import modules of its own layer or below. Prefix match, longest wins.
LAYERS: list[tuple[str, ...]] = [
    (
        "errors",
        "registry",
        "_io",
        "_pages",
        "_version",
        "_lazy",
        "progress",
        "transforms",
        "metrics",
        "null",
        "parallel",
    ),
    ("data",),
    ("models",),
    ("train", "export", "stealth", "suspects", "zoo", "zoo.manifest"),
    ("attacks",),
    ("fingerprints",),
    ("scoring", "verify", "calibrate", "screening", "reference", "evaluate", "tune", "zoo.spec", "zoo.build"),
    ("combine", "record", "api"),
    ("bench", "serve", "dispute"),
    ("demo",),
    ("cli", "__main__", ""),
]
# Every module or folder in fingerprints/ but the shared ones is a family: nothing outside it names
# it, except the package's facades (which import each family to register it).
SHARED_IN_FINGERPRINTS = ("base", "learnt", "memory")
FACADES = ("fingerprints", "")


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of the package that ``name`` imports, parent packages included (Python runs them)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if name else []
    base = base if is_pkg else base[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                mod = ".".join(anchor + ([node.module] if node.module else []))
            elif (node.module or "").startswith("modelprint"):
                mod = node.module.removeprefix("modelprint").lstrip(".")
            else:
                continue
            targets.append(mod)  # `from pkg import x` runs pkg's __init__ first, even when x is a submodule
            for alias in node.names:
                sub = f"{mod}.{alias.name}" if mod else alias.name
                targets.append(sub if sub in known else mod)
        elif isinstance(node, ast.Import):
            targets = [
                a.name.removeprefix("modelprint").lstrip(".")
                for a in node.names
                if a.name.split(".")[0] == "modelprint"
            ]
        for t in targets:
            parts = t.split(".") if t else []
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))  # a.b.c runs a and a.b first
            if not t:
                found.add("")  # a name taken from the facade itself (the package's __init__)
    return {t for t in found if t in known and t != name and not (t and name.startswith(t + "."))}


def layer(name: str) -> int:
    best, level = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (name == p or (p and name.startswith(p + "."))) and len(p) > best:
                best, level = len(p), i
    assert level is not None, f"module {name!r} is in no layer: add it to LAYERS"
    return level


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_no_cycles(graph: dict[str, set[str]]) -> None:
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_no_import_from_a_lower_layer_up(graph: dict[str, set[str]]) -> None:
    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if layer(b) > layer(a))
    assert upward == []


def test_families_are_named_only_in_their_folders(graph: dict[str, set[str]]) -> None:
    families = sorted(
        f"fingerprints.{p.stem if p.is_file() else p.name}"
        for p in (PACKAGE / "fingerprints").iterdir()
        if (p.suffix == ".py" or (p / "__init__.py").is_file()) and p.stem not in (*SHARED_IN_FINGERPRINTS, "__init__")
    )
    assert {"fingerprints.frequency", "fingerprints.naturalfinger", "fingerprints.metav"} <= set(families)
    leaks = sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        for b in targets
        for fam in families
        if (b == fam or b.startswith(fam + ".")) and not (a == fam or a.startswith(fam + ".")) and a not in FACADES
    )
    assert leaks == []


def test_the_checks_see_real_imports(graph: dict[str, set[str]]) -> None:
    """The walk is not vacuous: it finds imports that are known to exist, parent packages included."""
    assert "models" in graph["fingerprints.base"] and "errors" in graph["models.files"]
    assert "zoo" in graph["zoo.build"] or "zoo.manifest" in graph["zoo.build"]
    assert {"fingerprints.base", "fingerprints.frequency.marking"} <= graph["fingerprints.frequency.method"]
    assert "zoo" in graph["fingerprints.learnt"]  # a parent package counts: Python runs it first
    assert layer("zoo.build") > layer("fingerprints.base") > layer("attacks.prune") > layer("models.files")


def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef, list[str]]]:
    """Every function of the package: where it is, its node, and its file's lines."""
    out = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out.append((f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}", node, text.splitlines()))
    return out


def test_functions_are_measured_as_the_formatter_writes_them() -> None:
    """No ``# fmt: skip`` in a function: a call hand-packed to dodge the formatter would make a
    long function look short (module-level literal tables may keep their layout)."""
    skipped = [
        f"{where} line {i}"
        for where, node, lines in _functions()
        for i in range(node.lineno, node.end_lineno + 1)
        if "fmt: skip" in lines[i - 1] or "fmt: off" in lines[i - 1]
    ]
    assert skipped == []


def test_no_function_is_longer_than_60_lines() -> None:
    long = [where for where, node, _ in _functions() if node.end_lineno - node.lineno + 1 > 60]
    assert long == []


def test_function_lengths_fall_off_smoothly() -> None:
    """A limit met by packing shows as a pile-up just below it: there are no more functions of
    50-59 lines than of 40-49."""
    lengths = [node.end_lineno - node.lineno + 1 for _, node, _ in _functions()]
    forties, fifties = sum(40 <= n < 50 for n in lengths), sum(50 <= n < 60 for n in lengths)
    assert fifties <= forties, (forties, fifties)


def test_no_module_is_longer_than_600_lines() -> None:
    long = [
        f"{path.relative_to(PACKAGE)}: {n} lines"
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 600
    ]
    assert long == []


def _family_of(path: Path) -> str | None:
    """The family folder or module ``path`` belongs to, if any."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if len(parts) >= 2 and parts[0] == "fingerprints" and parts[1] not in (*SHARED_IN_FINGERPRINTS, "__init__"):
        return parts[1]
    return None


def test_no_method_name_is_compared_outside_its_family() -> None:
    """Code that asks ``method == "frequency"`` special-cases a family where a class attribute of
    the method would say it (as ``seed_name`` does): every such comparison is a leak."""
    from modelprint.fingerprints import METHODS

    names = set(METHODS.names())
    assert {"frequency", "ltrc", "naturalfinger"} <= names
    leaks = []
    for path in PACKAGE.rglob("*.py"):
        if _family_of(path) is not None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                for value in operands:
                    items = value.elts if isinstance(value, ast.Tuple | ast.List | ast.Set) else [value]
                    for item in items:
                        if isinstance(item, ast.Constant) and item.value in names:
                            leaks.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {item.value!r}")
    assert leaks == []


def test_every_registered_class_documents_itself() -> None:
    """Each architecture, method, attack and suspect adapter carries its own docstring (not the
    signature a dataclass writes) with an example, as the user reads it in ``help()``."""
    import modelprint  # noqa: F401  (registers everything)
    from modelprint.attacks import ATTACKS
    from modelprint.fingerprints import METHODS
    from modelprint.models import ARCHITECTURES
    from modelprint.suspects import SUSPECTS

    missing = []
    for registry in (ARCHITECTURES, METHODS, ATTACKS, SUSPECTS):
        for name in registry.names():
            cls = registry.get(name)
            doc = cls.__dict__.get("__doc__") or ""
            if doc.startswith(cls.__name__ + "(") or "Example" not in doc:
                missing.append(f"{registry.kind} {name} ({cls.__name__})")
    assert missing == []


def test_no_reference_to_documents_outside_the_repository() -> None:
    pattern = re.compile(r"DESIGN\.md|DESIGN[,:' ]|papers/|\bissue \d+")
    found = [
        f"{path.relative_to(PACKAGE.parents[1])}:{i}"
        for root in (PACKAGE, *(PACKAGE.parents[1] / d for d in ("tests", "benchmarks", "docs")))
        for path in [*root.rglob("*.py"), *root.rglob("*.md")]
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line) and path.name != "test_structure.py"
    ]
    readme = PACKAGE.parents[1] / "README.md"
    found += [f"README.md:{i}" for i, line in enumerate(readme.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []


def test_the_command_line_names_no_method() -> None:
    """The CLI is a layer over the registry: its defaults, help and messages name no family
    (short names like "c" aside, which are common words in help text)."""
    from modelprint.fingerprints import METHODS

    names = [n for n in METHODS.names() if len(n) > 2]
    found = []
    for path in (PACKAGE / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found += [
                    f"{path.name}:{node.lineno} {n}" for n in names if re.search(rf"\b{re.escape(n)}\b", node.value)
                ]
    assert found == []


# What a library message may hold with options in it: a command to run (``modelprint CMD ...``
# up to a bracket or semicolon, or in backticks), ray's own options, and the one message naming
# every way to trust code.
COMMANDS_AND_OTHER_OPTIONS = re.compile(r"`[^`]*`|modelprint [^);`]*|--(num-gpus|trust-arch)\b")


def _message_text(node: ast.expr) -> str:
    """The literal text of an error message (f-string parts and concatenations; ``{}`` for values)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_message_text(v) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp):
        return _message_text(node.left) + _message_text(node.right)
    return ""


def test_library_errors_name_parameters_not_command_line_options() -> None:
    """Below the CLI a message names a parameter as Python spells it, in backticks, and lists it
    in ``params``; the CLI shows the option instead (``ModelprintError.naming``)."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args):
                continue
            text = _message_text(node.exc.args[0])
            where = f"{path.relative_to(PACKAGE)}:{node.lineno}"
            if re.search(r"(?<![\w-])--[a-z]", COMMANDS_AND_OTHER_OPTIONS.sub("", text)):
                found.append(f"{where} names an option: {text[:80]}")
            for keyword in node.exc.keywords:
                if keyword.arg == "params":
                    found += [
                        f"{where} lists {p.value} but does not name it as `{p.value}`"
                        for p in keyword.value.elts
                        if text and f"`{p.value}`" not in text  # a message built elsewhere is not read here
                    ]
    assert found == []


def test_the_command_line_shows_a_library_parameter_as_its_option() -> None:
    from modelprint.cli.common import option_of
    from modelprint.errors import ParameterError

    error = ParameterError(
        "`max_queries` must be at least 1; `kind` too; max_queries stays", params=("max_queries", "kind")
    )
    assert error.naming(option_of) == "--max-queries must be at least 1; --suspect-type too; max_queries stays"
    assert str(error).startswith("`max_queries` must be at least 1")


def test_no_family_is_named_by_a_string_outside_its_folder() -> None:
    """Code outside ``fingerprints/`` names a method by its role (``PAPER_METHODS``,
    ``MARK_METHOD``, ...), never by a string literal, so no branch depends on a family's name.
    Docstrings and sentences that mention a family are words, not names, and are not checked."""
    from modelprint.fingerprints import METHODS

    names = set(METHODS.names())
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] == "fingerprints":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        found += [
            f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in docstrings
        ]
    assert found == []
