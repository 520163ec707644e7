"""Your own architecture by import path: trust before import, argument checks, imported weights."""

import json
import sys

import pytest
import torch
from torch import nn

from modelprint.errors import ModelFileError, ParameterError
from modelprint.models import create_arch, create_model, import_model, load_model, save_model, trust_arch, wrap_model
from modelprint.models.custom import TRUST_ENV, is_import_path, is_trusted, valid_import_path


def test_import_path_syntax():
    assert is_import_path("mynets:make_net") and is_import_path("a.b:C.make")
    assert not is_import_path("cnn") and not is_import_path("cnn:width=8") and not is_import_path(":x")
    assert valid_import_path("mynets:make_net") and valid_import_path("a.b_2:Net")
    for chain in ("a.b:C.make", "torchvision.models:_api.inspect.os.system", "a..b:C", "a:b c", "a:b()", "1a:b"):
        assert not valid_import_path(chain)
        with pytest.raises(ParameterError, match="one"):
            trust_arch(chain)


def test_an_untrusted_card_imports_nothing(user_module, tmp_path, monkeypatch):
    monkeypatch.setenv(TRUST_ENV, f"{user_module}:Net")
    net = create_arch(f"{user_module}:Net", num_classes=10, input_shape=(1, 8, 8))
    path = save_model(wrap_model(net, input_shape=(1, 8, 8), arch=f"{user_module}:Net"), tmp_path / "m")
    card = json.loads(path.with_suffix(".json").read_text())
    card["arch"] = f"{user_module}_other:Net"  # a card naming a module nobody trusted
    (tmp_path / f"{user_module}_other.py").write_text("raise SystemExit('imported!')\n")
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="--trust-arch"):
        load_model(path)
    assert f"{user_module}_other" not in sys.modules


def test_trusted_import_path_round_trips(user_module, tmp_path):
    trust_arch(f"{user_module}:Net")
    model = wrap_model(
        create_arch(f"{user_module}:Net", num_classes=3, input_shape=(1, 8, 8), width=2),
        input_shape=(1, 8, 8),
        arch=f"{user_module}:Net",
        arch_args={"width": 2, "num_classes": 3},
    )
    assert model.card.num_classes == 3  # read from one forward pass
    loaded = load_model(save_model(model, tmp_path / "m"))
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(model.eval()(x), loaded(x))
    assert loaded.card.arch == f"{user_module}:Net" and loaded.card.mean == (0.0,) and loaded.card.std == (1.0,)


def test_a_typo_in_an_argument_is_one_line_naming_the_real_ones(user_module):
    trust_arch(f"{user_module}:Net")
    with pytest.raises(ParameterError, match=r"has no argument 'widht'; it takes: width$"):
        create_arch(f"{user_module}:Net", num_classes=10, input_shape=(1, 8, 8), widht=3)
    with pytest.raises(ParameterError, match=r"'cnn' has no argument 'widht'; it takes: width, depth"):
        create_arch("cnn", num_classes=10, input_shape=(1, 8, 8), widht=3)


def test_missing_module_and_attribute(monkeypatch):
    trust_arch("no_such_module_xyz:Net", "torch.nn:NoSuchNet")
    with pytest.raises(ParameterError, match="cannot import 'no_such_module_xyz'"):
        create_arch("no_such_module_xyz:Net", num_classes=10, input_shape=(1, 8, 8))
    with pytest.raises(ParameterError, match="has no attribute 'NoSuchNet'"):
        create_arch("torch.nn:NoSuchNet", num_classes=10, input_shape=(1, 8, 8))


def test_library_factories_are_trusted_only_when_named_exactly(monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    for path in ("torchvision.models:resnet18", "timm:create_model", "torchvision.models:_api.inspect.os.system"):
        assert not is_trusted(path)
    monkeypatch.setenv(TRUST_ENV, "torchvision.models:resnet18,torchvision.models:_api.os.system")
    assert is_trusted("torchvision.models:resnet18")
    assert not is_trusted("torchvision.models:resnet34")  # no prefix match
    assert not is_trusted("torchvision.models:_api.os.system")  # an attribute chain, even when listed


def test_import_model_from_a_torch_save_state_dict(user_module, tmp_path):
    trust_arch(f"{user_module}:Net")
    net = create_arch(f"{user_module}:Net", num_classes=10, input_shape=(1, 8, 8))
    # as nn.DataParallel saves it: every name prefixed with "module."
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "w.pt")
    model = import_model(f"{user_module}:Net", tmp_path / "w.pt", input_shape=(1, 8, 8))
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(model(x), net.eval()(x)) and model.card.num_classes == 10
    wrong = r"does not fit .*conv.weight is \(4, 1, 3, 3\), the net has \(5, 1, 3, 3\)"
    with pytest.raises(ModelFileError, match=wrong):
        import_model(f"{user_module}:Net", tmp_path / "w.pt", input_shape=(1, 8, 8), arch_args={"width": 5})


class _Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_a_pickle_with_code_is_refused_not_run(tmp_path, capsys):
    torch.save({"w": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelFileError, match="not a readable state dict"):
        import_model("cnn", tmp_path / "evil.pt", input_shape=(1, 8, 8), num_classes=10)
    assert "pickled code ran" not in capsys.readouterr().out


def test_an_exported_graph_is_not_a_model_file(tmp_path):
    (tmp_path / "net.onnx").write_bytes(b"x")
    with pytest.raises(ModelFileError, match="modelprint model import"):
        load_model(tmp_path / "net.onnx")


def test_wrap_model_checks_what_it_is_given():
    with pytest.raises(ParameterError, match="input_shape"):
        wrap_model(nn.Linear(4, 2), input_shape=(4,))
    with pytest.raises(ParameterError, match="fails on a 1x8x8 input"):
        wrap_model(nn.Linear(4, 2), input_shape=(1, 8, 8), arch="torch.nn:Linear")
    with pytest.raises(ParameterError, match="no import path"):

        def local_factory():
            return nn.Flatten()

        wrap_model(nn.Flatten(), input_shape=(1, 2, 2), arch=local_factory)


# A suspect's folder, as an attacker lays it out: weights, a card naming a library factory, and
# a module of the same name beside them that writes a marker when imported.
SHADOW = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\nresnet18 = create_model = Net = None\n"


def _hostile_suspect(tmp_path, arch, shadows, arch_args=None):
    folder = tmp_path / "suspect"
    folder.mkdir()
    marker = tmp_path / "marker"
    for relative in shadows:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(SHADOW.format(marker=str(marker)))
    path = save_model(create_model("cnn", num_classes=10, input_shape=(1, 8, 8)), folder / "suspect")
    card = json.loads(path.with_suffix(".json").read_text())
    card.update(arch=arch, arch_args=arch_args or {})
    path.with_suffix(".json").write_text(json.dumps(card))
    return path, marker


LIBRARY_SHADOWS = [
    ("torchvision.models:resnet18", ["torchvision/__init__.py", "torchvision/models.py"]),
    ("timm:create_model", ["timm.py"]),
    ("timm:create_model", ["timm/__init__.py"]),
]


@pytest.mark.parametrize("arch,shadows", LIBRARY_SHADOWS)
@pytest.mark.parametrize("trusted", [False, True])
def test_a_library_name_on_a_card_never_imports_the_suspects_folder(arch, shadows, trusted, tmp_path, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    if trusted:  # even a verifier who uses that library's models imports the library, not the folder
        monkeypatch.setenv(TRUST_ENV, arch)
    path, marker = _hostile_suspect(tmp_path, arch, shadows)
    monkeypatch.chdir(path.parent)  # verifying from the suspect's own folder
    module = arch.partition(":")[0]
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] == module.split(".")[0]}
    for k in saved:
        sys.modules.pop(k)
    try:
        with pytest.raises(ModelFileError, match="--trust-arch" if not trusted else "cannot"):
            load_model(path)
    finally:
        for k in [k for k in sys.modules if k.split(".")[0] == module.split(".")[0]]:
            sys.modules.pop(k)
        sys.modules.update(saved)
    assert not marker.exists()


@pytest.mark.parametrize(
    "arch",
    ["torchvision.models:_api.inspect.os.system", "os:system", "builtins:eval", "subprocess:run", "a.b:C.make"],
)
def test_a_card_reaching_for_code_is_refused(arch, tmp_path, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    marker = tmp_path / "ran"
    path, _ = _hostile_suspect(tmp_path, arch, [], arch_args={"command": f"touch {marker}", "source": "1"})
    with pytest.raises(ModelFileError, match="refused|--trust-arch"):
        load_model(path)
    assert not marker.exists()


def test_a_trusted_module_is_not_replaced_by_a_same_named_file_beside_the_suspect(user_module, tmp_path, monkeypatch):
    """The user's own mynets on PYTHONPATH; the suspect's folder (the working folder) holds another."""
    trust_arch(f"{user_module}:Net")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    path, marker = _hostile_suspect(elsewhere, f"{user_module}:Net", [f"{user_module}.py"])
    monkeypatch.chdir(path.parent)
    monkeypatch.syspath_prepend(str(path.parent))  # as `python -m` puts the working folder first
    with pytest.raises(ModelFileError, match=r"does not fit its card.*missing 4 tensors \(e.g. net.conv"):
        load_model(path)  # the real Net was built (and its shapes differ from the cnn's weights)
    assert not marker.exists()


@pytest.mark.parametrize(
    "arch,args,shape",
    [
        ("cnn", {"depth": 100_000}, (1, 8, 8)),
        ("vit-tiny", {"depth": 100_000}, (1, 8, 8)),
        ("cnn", {"width": 10**7}, (1, 8, 8)),
        ("vit-tiny", {}, (1, 1_000_003, 1_000_003)),  # a prime side: a divisor search of a million steps
        ("vit-tiny", {"heads": 10**6}, (1, 8, 8)),
        ("cnn", {}, (10**5, 8, 8)),
        ("cnn", {"depth": "3" * 50}, (1, 8, 8)),
        ("mobilenetv2", {"width": 1e9}, (3, 32, 32)),
        ("resnet18", {"width": -5}, (3, 32, 32)),
    ],
)
def test_a_card_asking_for_a_huge_network_is_refused_before_it_is_built(arch, args, shape, tmp_path):
    import time

    path = save_model(create_model("cnn", num_classes=10, input_shape=(1, 8, 8)), tmp_path / "suspect")
    card = json.loads(path.with_suffix(".json").read_text())
    card.update(arch=arch, arch_args=args, input_shape=list(shape), mean=[0.5] * shape[0], std=[0.25] * shape[0])
    path.with_suffix(".json").write_text(json.dumps(card))
    started = time.monotonic()
    with pytest.raises(ModelFileError, match="limit"):
        load_model(path)
    assert time.monotonic() - started < 2


def test_a_card_asking_for_too_many_classes_is_refused(tmp_path):
    path = save_model(create_model("cnn", num_classes=10, input_shape=(1, 8, 8)), tmp_path / "suspect")
    card = json.loads(path.with_suffix(".json").read_text())
    card["num_classes"] = 10**9
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="limit"):
        load_model(path)
