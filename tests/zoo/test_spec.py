import json
from collections import Counter

import pytest

from modelprint.zoo.build import load_spec
from modelprint.zoo.spec import SpecError, builtin_specs, parse_spec_text

from ..conftest import TINY_SPEC


@pytest.mark.parametrize(
    ("name", "data"), [("fingerbench-cifar10", "cifar10:/nonexistent"), ("fingerbench-fmnist", None)]
)
def test_builtin_specs_have_the_fingerbench_categories(name, data):
    assert {"mini-digits", "mini-fmnist", "fingerbench-cifar10", "fingerbench-fmnist"} <= set(builtin_specs())
    fb = load_spec(name, data=data)
    counts = Counter((m.role, m.category) for m in fb.models)
    assert len(fb.models) == 154
    assert sum(n for (role, _), n in counts.items() if role == "positive") == 63
    for category, n in {"source": 1, "finetune": 4, "prune": 9, "noise": 9, "advtrain": 10}.items():
        assert counts["positive", category] == counts["negative", category] == n
    assert counts["positive", "distill"] == counts["positive", "knockoff"] == 15
    assert counts["negative", "other-arch"] == counts["negative", "other-arch-distill"] == 14
    for mini in (load_spec("mini-digits"), load_spec("mini-fmnist")):
        mini_counts = Counter((m.role, m.category) for m in mini.models)
        same_data = {"independent-same-data", "independent-same-data-distill"}
        evasive = {"evasive"} if mini.name == "mini-fmnist" else set()
        assert {c for _, c in mini_counts} == {c for _, c in counts} | same_data | evasive
        # the hardest honest negatives: trained on the owner's own half, several architectures, and their students
        scratch = [m for m in mini.models if m.category == "independent-same-data"]
        assert len(scratch) == 5 and {m.split for m in scratch} == {"owner"} and len({m.arch for m in scratch}) >= 3
        assert all(m.role == "negative" for m in mini.models if m.category in same_data)
        assert mini_counts["negative", "independent-same-data-distill"] == 5
        for category in ("finetune", "prune", "noise", "advtrain", "distill", "knockoff"):
            assert mini_counts["positive", category] == mini_counts["negative", category] > 0
        others = [m for m in mini.models if m.category == "other-arch"]
        assert len({m.arch for m in others}) >= 5 and mini_counts["negative", "other-arch-distill"] == len(others)


def test_mini_fmnist_trains_on_a_subset_and_takes_each_architectures_own_settings():
    spec = load_spec("mini-fmnist")
    assert spec.data == "fashion-mnist" and spec.train_subset == 10000
    scratch = {m.arch: m.train for m in spec.models if m.parent is None}
    assert scratch["cnn"]["optimizer"] == "sgd" and scratch["cnn"]["epochs"] == 10
    # vit-tiny's defaults live beside the architecture, not in the spec: Adam, twice the epochs.
    assert "adam" not in spec.text and scratch["vit-tiny"]["optimizer"] == "adam"
    assert scratch["vit-tiny"]["epochs"] == 20 and scratch["vit-tiny"]["weight_decay"] == 0.0
    knockoffs = [m for m in spec.models if m.category == "knockoff"]
    assert all(m.steps[0]["classes"] == [0, 1, 2, 3, 4, 5, 6] for m in knockoffs)
    # the thief who filters: a fine-tuned, a pruned and a distilled copy behind a detector, on both sides
    evasive = [m for m in spec.models if m.category == "evasive"]
    assert Counter(m.role for m in evasive) == {"positive": 3, "negative": 3}
    assert all(m.steps[-1]["attack"] == "evade" and m.arch == "evasive" for m in evasive)


def test_spec_train_subset_is_validated():
    base = TINY_SPEC.replace('data = "digits"', 'data = "digits"\ntrain_subset = 100', 1)
    assert parse_spec_text(base).train_subset == 100
    with pytest.raises(SpecError, match="train_subset"):
        parse_spec_text(TINY_SPEC.replace('data = "digits"', 'data = "digits"\ntrain_subset = -3', 1))


def test_ids_spell_the_lineage_and_roles_are_inherited():
    spec = parse_spec_text(TINY_SPEC)
    ids = {m.id: m for m in spec.models}
    pruned = ids["cnn[width=8](owner,s0)-prune(0.5)-finetune(ftal)"]
    assert pruned.parent == "cnn[width=8](owner,s0)" and pruned.role == "positive"
    assert ids["cnn[width=8](attacker,s1)-distill(cnn[width=4])"].role == "negative"
    assert ids["cnn[width=8](attacker,s1)-distill(cnn[width=4])"].arch == "cnn"
    assert pruned.file == "cnn_width=8_owner_s0-prune_0.5-finetune_ftal"
    assert [m.line for m in spec.models] == sorted(m.line for m in spec.models)
    # a stable seed per model, the same on every parse
    assert pruned.steps[0]["seed"] == parse_spec_text(TINY_SPEC).by_id()[pruned.id].steps[0]["seed"]


def _line_of(text, needle):
    return next(i + 1 for i, line in enumerate(text.splitlines()) if needle in line) - 1


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('attack = "prune", rate = 0.5', 'attack = "prunee", rate = 0.5', "unknown attack 'prunee'"),
        ('attack = "prune", rate = 0.5', 'attack = "prune", rate = 1.5', "rate must be in"),
        ('from = ["source", "mirror"]\ncategory = "distill"', 'from = ["nobody"]\ncategory = "distill"', "'nobody'"),
        ('arch = "cnn"\nargs = { width = 8 }\nsplit = "owner"', 'arch = "cnn9"\nargs = {}\nsplit = "owner"', "cnn9"),
        ('variants = [{ mode = "ftll" }', 'variants = [{ mode = "ftll", typo = 1 }', "typo"),
        ('category = "prune"', 'category = "prune"\ncolour = "red"', "unknown field"),
        ('split = "owner"\nseed = 0', 'split = "owner"\nmark = { host = "features.0" }', "mark needs host"),
        ('split = "owner"\nseed = 0', 'split = "owner"\nmark = { host = "x", key = 1, colour = 2 }', "unknown setting"),
    ],
)
def test_bad_specs_name_the_line(old, new, message):
    assert old in TINY_SPEC
    text = TINY_SPEC.replace(old, new, 1)
    entry_line = max(
        i + 1
        for i, line in enumerate(text.splitlines()[: _line_of(text, new.splitlines()[0]) + 1])
        if "[[models]]" in line
    )
    with pytest.raises(SpecError, match=message) as err:
        parse_spec_text(text, "spec.toml")
    assert f"spec.toml line {entry_line}:" in str(err.value)


def test_cycles_and_duplicates_are_refused():
    cycle = TINY_SPEC + '\n[[models]]\nname = "a"\nfrom = ["b"]\ncategory = "x"\nsteps = [{ attack = "permute" }]\n'
    cycle += '\n[[models]]\nname = "b"\nfrom = ["a"]\ncategory = "x"\nsteps = [{ attack = "permute" }]\n'
    with pytest.raises(SpecError, match="cycle"):
        parse_spec_text(cycle, "spec.toml")
    twice = (
        TINY_SPEC + '\n[[models]]\nfrom = ["source"]\ncategory = "again"\nsteps = [{ attack = "prune", rate = 0.5 }, '
    )
    twice += '{ attack = "finetune", mode = "ftal", epochs = 2 }]\n'
    with pytest.raises(SpecError, match="already made at line"):
        parse_spec_text(twice, "spec.toml")
    with pytest.raises(SpecError, match="not valid TOML"):
        parse_spec_text("[[models]\n", "spec.toml")


@pytest.mark.parametrize("evaluation", ["mini-digits", "mini-fmnist"])
def test_training_specs_share_only_the_source_with_their_evaluation_spec(evaluation):
    """A method's trained models must not be suspects it is scored on: the training spec has the
    evaluation spec's source recipe (so the same source bytes) and no other model recipe of it."""
    ev, tr = load_spec(evaluation), load_spec(f"{evaluation}-train")
    assert (ev.data, ev.split_seed, ev.train_subset) == (tr.data, tr.split_seed, tr.train_subset)
    ev_src = next(p for p in ev.models if p.category == "source" and p.role == "positive")
    tr_src = next(p for p in tr.models if p.category == "source" and p.role == "positive")
    assert ev_src.recipe() == tr_src.recipe() and ev_src.id == tr_src.id
    recipes = {(p.parent, json.dumps(p.recipe(), sort_keys=True)) for p in ev.models}
    others = [p for p in tr.models if p is not tr_src]
    assert len(others) == 27 and sum(p.role == "positive" for p in others) == 7
    assert not {(p.parent, json.dumps(p.recipe(), sort_keys=True)) for p in others} & recipes
    assert {p.seed for p in others if p.parent is None}.isdisjoint({p.seed for p in ev.models if p.parent is None})


def test_whitebox_spec_marks_source_and_mirror_with_their_own_keys():
    spec = load_spec("whitebox-digits")
    source, mirror = spec.models[:2]
    assert (source.mark["key"], mirror.mark["key"]) == (7, 8) and source.id.endswith("+mark(key=7)")
    assert source.recipe()[-1] == {"mark": "frequency", "host": "features.0", "key": 7, "aux_class": False}
    cats = Counter((m.role, m.category) for m in spec.models)
    for category in ("finetune-sgd", "finetune-adam", "reparametrise", "overwrite", "adaptive-reset", "distill"):
        assert cats["positive", category] == cats["negative", category] > 0
    # fine-tunes that differ in optimiser or learning rate get ids of their own
    assert len({m.id for m in spec.models if m.category.startswith("finetune")}) == 10


TOP = """
name = "wide"
data = "digits:8"
"""
SOURCE = """
[[models]]
name = "m0"
role = "positive"
category = "source"
arch = "cnn"
seed = 0
"""


def _child_first_chain(length: int) -> str:
    entries = [
        f'[[models]]\nname = "m{k}"\nfrom = "m{k - 1}"\ncategory = "noise"\n'
        'steps = [{ attack = "noise", sigma = 0.01 }]\n'
        for k in range(length, 0, -1)
    ]
    return TOP + "\n".join(entries) + SOURCE


def _fan(width: int) -> str:
    """``width`` entries derived from m0, listed before it, plus one of each that derives from them."""
    first = [
        f'[[models]]\nname = "a{k}"\nfrom = "m0"\ncategory = "noise"\n'
        f'steps = [{{ attack = "noise", sigma = {k + 1}e-6 }}]\n'
        for k in range(width)
    ]
    second = [
        f'[[models]]\nfrom = "a{k}"\ncategory = "prune"\nsteps = [{{ attack = "prune", rate = 0.1 }}]\n'
        for k in range(width)
    ]
    return TOP + "\n".join(second + first) + SOURCE


def test_a_spec_listed_children_first_parses_in_linear_time():
    import time

    started = time.monotonic()
    spec = parse_spec_text(_fan(1000), "fan.toml")
    assert len(spec.models) == 2001
    assert time.monotonic() - started < 20


def test_a_chain_too_long_for_a_file_name_is_refused_in_one_line_quickly():
    import time

    started = time.monotonic()
    with pytest.raises(SpecError, match="is 2.. characters, over 200"):
        parse_spec_text(_child_first_chain(2000), "chain.toml")
    assert time.monotonic() - started < 20
