"""Zoo specs: TOML data that names every model of a zoo and how it is made.

A spec has top-level ``name``, ``data`` (a dataset spec), ``split_seed``, ``train_subset``
(images kept of each training half, class-balanced and seeded; 0 = all), a ``[train]``
table (training defaults for models trained from scratch, :class:`~modelprint.train.TrainConfig`
fields) and a list of ``[[models]]`` entries. An entry either trains from scratch
(``arch``, ``args``, ``split``, ``seed``, ``role``, ``category``, optional ``subset``: the
images of its split it trains on, class-balanced and drawn with its seed, optional ``train``, and
optional ``mark = { host = LAYER, key = SEED, ... }``: the white-box frequency mark trained
in on the same split after training, with the ``frequency`` method's ``prepare`` settings) or
derives from other entries (``from = ["name", ...]``, ``category`` and ``steps``, a list of
attacks: ``{ attack = "prune", rate = 0.5 }``; a step may name its ``data`` split or data
set and its ``seed``). ``variants`` (a list of tables) turns one entry into several models:
a variant's key that is an entry field replaces it, any other key fills the ``"$key"``
placeholders of the steps. ``name`` lets later entries derive from all models of an entry.

Derived models inherit the role of their parent and get readable ids that spell their
lineage, e.g. ``cnn[width=16](owner,s0)-prune(0.5)-finetune(ftal)``.
"""

from __future__ import annotations

import collections
import copy
import re
import tomllib
import zlib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, get_args

from ..attacks import ATTACKS, create_attack
from ..data import SPLITS, parse_spec
from ..errors import ModelprintError, ParameterError
from ..fingerprints import MARK_METHOD, METHODS
from ..models import find_arch
from ..train import TrainConfig, training_settings
from .manifest import Role

ENTRY_FIELDS = {
    *("name", "role", "category", "arch", "args", "split", "seed", "subset", "train", "mark", "from", "steps"),
    "variants",
}
# A scratch model's ``mark`` table: the white-box mark MARK_METHOD trains in after training
# (its ``prepare`` settings, and the owner's ``key``); the recipe records the method's name.
ROLES: tuple[Role, ...] = get_args(Role)
# A spec expands its variants and derivations multiplicatively; a few KB of TOML could ask for
# hundreds of thousands of models (and the memory to plan them). Nobody builds that on purpose.
MAX_PLANS = 10_000


class SpecError(ModelprintError):
    """A zoo spec that cannot be built; the message names the file and line."""


@dataclass
class ModelPlan:
    """One model of the zoo, fully resolved: how to make it and where it sits."""

    id: str
    role: Role
    category: str
    arch: str
    parent: str | None = None  # id of the zoo model it derives from
    args: dict[str, Any] = field(default_factory=dict)
    split: str = "owner"
    seed: int = 0
    subset: int = 0  # scratch models: images of the split it trains on (0: the zoo's train_subset)
    train: dict[str, Any] = field(default_factory=dict)  # scratch models: TrainConfig fields
    mark: dict[str, Any] = field(default_factory=dict)  # scratch models: the frequency mark, after training
    steps: list[dict[str, Any]] = field(default_factory=list)  # derived models: attack steps
    line: int | None = None

    @property
    def file(self) -> str:
        """File stem under ``models/``: the id with shell-unfriendly characters replaced."""
        return re.sub(r"[^A-Za-z0-9._+=-]+", "_", re.sub(r"[)\]]", "", self.id)).strip("_")

    def recipe(self) -> list[dict[str, Any]]:
        if self.parent is None:
            trained = {"train": self.arch, "args": self.args, "split": self.split, "seed": self.seed, **self.train}
            if self.subset:
                trained["subset"] = self.subset
            return [trained, {"mark": MARK_METHOD, **self.mark}] if self.mark else [trained]
        return self.steps

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ZooSpec:
    name: str
    data: str
    split_seed: int
    models: list[ModelPlan]
    text: str  # the spec as written, stored with the zoo
    source: str  # where it was read from
    train_subset: int = 0

    def by_id(self) -> dict[str, ModelPlan]:
        return {m.id: m for m in self.models}


def builtin_specs() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml")
        for p in resources.files(__package__).joinpath("specs").iterdir()
        if p.name.endswith(".toml")
    )


def read_spec_text(spec: str | Path) -> tuple[str, str]:
    """The text of a spec file, or of a built-in spec given by name (``mini-digits``)."""
    path = Path(spec)
    if path.suffix != ".toml" and str(spec) in builtin_specs():
        return resources.files(__package__).joinpath("specs", f"{spec}.toml").read_text("utf-8"), f"{spec}.toml"
    if not path.is_file():
        raise SpecError(f"zoo spec not found: {spec} (a .toml file or a built-in: {', '.join(builtin_specs())})")
    if path.stat().st_size > 1 << 20:
        raise SpecError(f"{path}: a zoo spec over 1 MiB is refused")
    return path.read_text("utf-8"), str(path)


def _entry_lines(text: str) -> list[int]:
    return [i + 1 for i, line in enumerate(text.splitlines()) if re.match(r"\s*\[\[\s*models\s*\]\]", line)]


def _substitute(value: Any, variables: dict[str, Any], used: set[str]) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        key = value[1:]
        if key not in variables:
            raise ParameterError(f"placeholder {value!r} has no value in this variant")
        used.add(key)
        return copy.deepcopy(variables[key])
    if isinstance(value, dict):
        return {k: _substitute(v, variables, used) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables, used) for v in value]
    return value


def _scratch_id(arch: str, args: dict[str, Any], split: str, seed: int, subset: int = 0) -> str:
    shown = ",".join(f"{k}={v}" for k, v in sorted(args.items()))
    return f"{arch}{f'[{shown}]' if shown else ''}({split},s{seed}{f',n{subset}' if subset else ''})"


def _check_data(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise ParameterError(f"{where}: data must be a split name or a data set spec")
    if value not in SPLITS:
        parse_spec(value)


def parse_spec_text(text: str, source: str = "zoo.toml", *, data: str | None = None) -> ZooSpec:
    """Parse and fully validate a spec: every error names ``source`` and the line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{source}: not valid TOML ({e})") from None
    train_subset, train_defaults, dataset = _check_top(raw, source, data)
    lines = _entry_lines(text)

    def line_of(i: int) -> int | None:
        return lines[i] if i < len(lines) else None

    def where(i: int) -> str:
        return f"{source} line {lines[i]}" if i < len(lines) else f"{source} [[models]] #{i + 1}"

    plans: list[ModelPlan] = []
    groups: dict[str, list[str]] = {}
    pending: list[tuple[int, dict[str, Any], list[tuple[dict[str, Any], Any]]]] = []  # derived entries, for later
    for i, entry in enumerate(raw["models"]):
        try:
            expanded = _expand_variants(entry)
            if "from" in entry:
                pending.append((i, entry, expanded))
                continue
            _check_plan_count(len(plans) + len(expanded))
            ids = []
            for fields, _ in expanded:
                plans.append(_scratch_plan(fields, train_defaults, line_of(i)))
                ids.append(plans[-1].id)
            if "name" in entry:
                groups.setdefault(entry["name"], []).extend(ids)
        except ModelprintError as e:
            raise SpecError(f"{where(i)}: {e}") from None
    _resolve_derived(pending, plans, groups, where, line_of, source)
    plans.sort(key=lambda p: p.line or 0)  # spec order (the sort is stable within an entry)
    _check_unique(plans, source)
    name = str(raw.get("name", Path(source).stem))
    if not name.isprintable():
        raise SpecError(f"{source}: name {name.encode('unicode_escape').decode()[:60]} holds control characters")
    return ZooSpec(
        name=name,
        data=dataset,
        split_seed=int(raw.get("split_seed", 0)),
        models=plans,
        text=text,
        source=source,
        train_subset=train_subset,
    )


def _check_top(raw: dict[str, Any], source: str, data: str | None) -> tuple[int, dict[str, Any], str]:
    """The spec's top-level keys checked: (train_subset, training defaults, data set)."""
    unknown_top = sorted(set(raw) - {"name", "description", "data", "split_seed", "train_subset", "train", "models"})
    if unknown_top:
        raise SpecError(f"{source}: unknown top-level key(s) {', '.join(unknown_top)}")
    entries = raw.get("models")
    if not isinstance(entries, list) or not entries:
        raise SpecError(f"{source}: no [[models]] entries")
    train_subset = raw.get("train_subset", 0)
    if not isinstance(train_subset, int) or isinstance(train_subset, bool) or train_subset < 0:
        raise SpecError(f"{source}: train_subset must be a whole number >= 0 (0 = every image), got {train_subset!r}")
    train_defaults = raw.get("train", {})
    try:
        TrainConfig(**train_defaults)
    except (TypeError, ParameterError) as e:
        raise SpecError(f"{source}: [train]: {e}") from None
    dataset = data or raw.get("data", "digits")
    try:
        parse_spec(dataset)
    except ModelprintError as e:
        raise SpecError(f"{source}: data: {e}") from None
    return train_subset, train_defaults, dataset


def _expand_variants(entry: Any) -> list[tuple[dict[str, Any], Any]]:
    """One entry's (fields, steps) per variant, ``$key`` placeholders in the steps filled in."""
    if not isinstance(entry, dict):
        raise ParameterError("each [[models]] entry must be a table")
    unknown = sorted(set(entry) - ENTRY_FIELDS)
    if unknown:
        raise ParameterError(f"unknown field(s) {', '.join(unknown)}; fields: {', '.join(sorted(ENTRY_FIELDS))}")
    variants = entry.get("variants", [{}])
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants) or not variants:
        raise ParameterError("variants must be a non-empty list of tables")
    expanded = []
    for variant in variants:
        fields = {k: v for k, v in entry.items() if k != "variants"}
        fields.update({k: v for k, v in variant.items() if k in ENTRY_FIELDS})
        variables = {k: v for k, v in variant.items() if k not in ENTRY_FIELDS}
        used: set[str] = set()
        steps = _substitute(fields.get("steps", []), variables, used)
        unused = sorted(set(variables) - used)
        if unused:
            raise ParameterError(f"variant key(s) {', '.join(unused)} are neither fields nor used as $key")
        expanded.append((fields, steps))
    return expanded


def _resolve_derived(
    pending: list, plans: list[ModelPlan], groups: dict[str, list[str]], where: Any, line_of: Any, source: str
) -> None:
    """Plan the derived entries, which may name groups defined anywhere, each once every other
    entry that defines a name it derives from is planned (a topological order, linear in the
    entries: a spec listed children first costs no more than one listed parents first)."""
    defined_by: dict[str, list[int]] = {}
    for k, (_, entry, _) in enumerate(pending):
        if "name" in entry:
            defined_by.setdefault(entry["name"], []).append(k)
    dependents: list[list[int]] = [[] for _ in pending]
    waiting = [0] * len(pending)
    names_of: list[list[str]] = []
    for k, (i, entry, _) in enumerate(pending):
        try:
            names = _from_names(entry)
        except ModelprintError as e:
            raise SpecError(f"{where(i)}: {e}") from None
        names_of.append(names)
        missing = [n for n in names if n not in groups and n not in defined_by]
        if missing:
            raise SpecError(f"{where(i)}: from names {', '.join(map(repr, missing))}, which no entry defines")
        for d in {d for n in names for d in defined_by.get(n, []) if d != k}:
            dependents[d].append(k)
            waiting[k] += 1
    ready = collections.deque(k for k in range(len(pending)) if not waiting[k])
    by_id = {p.id: p for p in plans}
    planned = 0
    while ready:
        k = ready.popleft()
        i, entry, expanded = pending[k]
        names = names_of[k]
        ids = []
        try:
            _check_plan_count(len(plans) + sum(len(groups.get(n, [])) for n in names) * len(expanded))
            for parent_id in [pid for n in names for pid in groups.get(n, [])]:
                for fields, steps in expanded:
                    plan = _derived_plan(by_id[parent_id], fields, steps, line_of(i))
                    plans.append(plan)
                    by_id[plan.id] = plan
                    ids.append(plan.id)
        except ModelprintError as e:
            raise SpecError(f"{where(i)}: {e}") from None
        if "name" in entry:
            groups.setdefault(entry["name"], []).extend(ids)
        planned += 1
        for d in dependents[k]:
            waiting[d] -= 1
            if not waiting[d]:
                ready.append(d)
    if planned < len(pending):
        stuck = [pending[k][0] for k in range(len(pending)) if waiting[k]]
        cycle = ", ".join(where(j).removeprefix(f"{source} ") for j in stuck[:10])
        raise SpecError(f"{source}: entries at {cycle} derive from each other in a cycle")


def _from_names(entry: dict[str, Any]) -> list[str]:
    names = entry["from"] if isinstance(entry["from"], list) else [entry["from"]]
    if not all(isinstance(n, str) for n in names):
        raise ParameterError(f"'from' names entries by their 'name' strings, got {str(entry['from'])[:60]}")
    return names


def _check_unique(plans: list[ModelPlan], source: str) -> None:
    """Every model id, and every file name it maps to, made once."""
    seen: dict[str, ModelPlan] = {}
    for plan in plans:
        if plan.id in seen:
            raise SpecError(
                f"{source} line {plan.line}: model id {plan.id!r} already made at line {seen[plan.id].line}; "
                "give the steps a distinguishing setting or seed"
            )
        seen[plan.id] = plan
    files = {}
    for plan in plans:
        if plan.file in files:
            raise SpecError(f"{source} line {plan.line}: {plan.id!r} and {files[plan.file]!r} map to one file name")
        files[plan.file] = plan.id


# A derived model's id names its whole chain of steps, and its file is named after its id.
MAX_ID_CHARS = 200


def _check_plan_count(n: int) -> None:
    if n > MAX_PLANS:
        raise ParameterError(
            f"the spec expands to more than {MAX_PLANS} models ({n} so far); split it or use fewer variants"
        )


def _scratch_plan(fields: dict[str, Any], train_defaults: dict[str, Any], line: int | None) -> ModelPlan:
    for key in ("arch", "role", "category"):
        if key not in fields:
            raise ParameterError(f"a model trained from scratch needs {key!r} (or 'from' to derive it)")
    arch, args = fields["arch"], fields.get("args", {})
    find_arch(arch)
    if fields["role"] not in ROLES:
        raise ParameterError(f"role must be positive or negative, got {fields['role']!r}")
    split = fields.get("split", "owner")
    if split not in ("owner", "attacker", "all"):
        raise ParameterError(f"split must be owner, attacker or all, got {split!r}")
    seed = int(fields.get("seed", 0))
    subset = fields.get("subset", 0)
    if not isinstance(subset, int) or isinstance(subset, bool) or subset < 0:
        raise ParameterError(f"subset must be a whole number >= 0 (0 = the zoo's train_subset), got {subset!r}")
    explicit = fields.get("train", {})
    if not isinstance(explicit, dict):
        raise ParameterError("train must be a table of training settings")
    train = training_settings(arch, train_defaults, explicit)
    mark = _check_mark(fields.get("mark", {}))
    return ModelPlan(
        id=_scratch_id(arch, args, split, seed, subset) + (f"+mark(key={mark['key']})" if mark else ""),
        role=fields["role"],
        category=fields["category"],
        arch=arch,
        args=dict(args),
        split=split,
        seed=seed,
        subset=subset,
        train=train,
        mark=mark,
        line=line,
    )


def _check_mark(mark: Any) -> dict[str, Any]:
    """A scratch entry's ``mark`` table, checked: ``host`` and ``key`` at least (empty: no mark)."""
    if not isinstance(mark, dict):
        raise ParameterError("mark must be a table: { host = LAYER, key = SEED, ... }")
    if not mark:
        return {}
    fields = {"key", *METHODS.get(MARK_METHOD).prepare_settings}
    unknown = sorted(set(mark) - fields)
    if unknown:
        known = ", ".join(sorted(fields))
        raise ParameterError(f"mark: unknown setting(s) {', '.join(unknown)}; settings: {known}")
    if not isinstance(mark.get("host"), str) or not isinstance(mark.get("key"), int):
        raise ParameterError("mark needs host (a layer name: modelprint list --hosts ARCH) and key (an integer)")
    return dict(mark)


def _derived_plan(parent: ModelPlan, fields: dict[str, Any], steps: Any, line: int | None) -> ModelPlan:
    for key in ("arch", "args", "split", "role", "train"):
        if key in fields:
            raise ParameterError(f"{key!r} belongs to models trained from scratch; a derived model takes 'steps'")
    if "category" not in fields:
        raise ParameterError("a derived entry needs a 'category'")
    if not isinstance(steps, list) or not steps:
        raise ParameterError("a derived entry needs a non-empty 'steps' list")
    arch, labels, resolved = parent.arch, [], []
    for step in steps:
        if not isinstance(step, dict) or "attack" not in step:
            raise ParameterError("each step is a table with an 'attack' name")
        params = {k: v for k, v in step.items() if k not in ("attack", "data", "seed")}
        attack = create_attack(step["attack"], **params)
        cls = ATTACKS.get(step["attack"])
        data = step.get("data", cls.default_split if cls.needs_data else None)
        if data is not None:
            _check_data(data, f"step {step['attack']}")
        labels.append(attack.step_id())
        resolved.append(
            {"attack": step["attack"], **params, **({"data": data} if data else {}), "seed": step.get("seed")}
        )
        arch = getattr(attack, "arch", arch)  # extraction attacks make a network of their own
    plan_id = "-".join([parent.id, *labels])
    if len(plan_id) > MAX_ID_CHARS:
        raise ParameterError(
            f"the model id {plan_id[:60]}… is {len(plan_id)} characters, over {MAX_ID_CHARS} (a chain of "
            "derivations too long for a file name); derive from a model nearer the root"
        )
    for index, step in enumerate(resolved):  # a stable seed per model and step unless the spec fixes one
        if step["seed"] is None:
            step["seed"] = zlib.crc32(f"{plan_id}#{index}".encode()) % (2**31)
    return ModelPlan(
        id=plan_id,
        role=parent.role,
        category=fields["category"],
        arch=arch,
        parent=parent.id,
        seed=int(resolved[-1]["seed"]),
        steps=resolved,
        line=line,
    )
