"""The facade: a plain nn.Module goes through fingerprint, calibrate and verify."""

import json

import pytest
import torch
from torch import nn

import modelprint
from modelprint.errors import CalibrationError, ParameterError


class UserNet(nn.Module):
    """A user's network: no card, no modelprint base class; takes [0, 1] images."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 10))

    def forward(self, x):
        return self.body(x)


def _fit(seed, data, net=None, steps=150, lr=3e-3, make=UserNet, inputs=lambda x: x):
    """Trained as users train, in plain PyTorch; ``inputs`` is the training loop's own
    preprocessing, and a network returning ``(logits, ...)`` is trained on its logits."""
    torch.manual_seed(seed)
    net = (net or make()).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        i = torch.randint(len(data), (64,))
        out = net(inputs(data.x[i]))
        loss = nn.functional.cross_entropy(out[0] if isinstance(out, tuple) else out, data.y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def user_nets(splits):
    owner = _fit(0, splits.owner)
    independent = [_fit(s, splits.attacker) for s in range(1, 9)]
    copy = _fit(99, splits.tune, net=_fit(0, splits.owner), steps=20)  # fine-tuned from the owner's weights
    innocent = _fit(42, splits.attacker)
    return owner, independent, copy, innocent


def test_plain_module_from_fingerprint_to_verdict(user_nets, splits):
    owner, independent, copy, innocent = user_nets
    fp = modelprint.fingerprint(owner, data=(splits.owner.x, splits.owner.y), method="ipguard", n=60, seed=0)
    assert fp.meta["source_arch"].endswith(":UserNet") and fp.meta["input_shape"] == [1, 8, 8]
    assert modelprint.verify(fp, copy).verdict == "inconclusive"  # no null yet: never a match
    fp = modelprint.calibrate(fp, references=independent)
    assert fp.meta["null"]["n_models"] == 8
    stolen, other = modelprint.verify(fp, copy, fpr=0.01), modelprint.verify(fp, innocent, fpr=0.01)
    assert stolen.verdict == "match", stolen.statistic
    # an innocent model is never a match, and sits inside the null
    assert other.verdict != "match" and other.p_value > 0.05, (other.statistic, other.p_value)


def test_the_seed_is_drawn_and_recorded_when_omitted(user_nets, splits):
    owner = user_nets[0]
    a = modelprint.fingerprint(owner, data=splits.owner, method="c", n=5, steps=5)
    b = modelprint.fingerprint(owner, data=splits.owner, method="c", n=5, steps=5, seed=a.meta["seed"])
    assert isinstance(a.meta["seed"], int) and torch.equal(a.x, b.x)


def test_clear_errors_at_the_boundary(user_nets, splits):
    owner, independent, _, _ = user_nets
    with pytest.raises(ParameterError, match="input_shape"):
        modelprint.fingerprint(owner, method="c")
    with pytest.raises(ParameterError, match=r"\[0, 1\]"):
        modelprint.fingerprint(owner, data=(splits.owner.x * 255, splits.owner.y))
    fp = modelprint.fingerprint(owner, data=splits.owner, method="c", n=5, steps=5, seed=0)
    with pytest.raises(ParameterError, match="list of independent models"):
        modelprint.calibrate(fp, references=independent[0])
    with pytest.raises(CalibrationError, match="source or derived"):
        modelprint.calibrate(fp, references=[owner, *independent])


MEAN, STD = 0.3, 0.35


class NormalisedResNet(nn.Module):
    """A user's residual CNN with BatchNorm, trained on (x - 0.3) / 0.35, returning (logits, features)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.head = nn.Linear(8 * 64, 10)

    def forward(self, x):
        h = self.stem(x)
        features = (h + self.block(h)).relu().flatten(1)
        return self.head(features), features


def _fit_normalised(seed, data, net=None, steps=200, lr=3e-3):
    """The network normalises nothing; the training loop does, with (x - 0.3) / 0.35."""
    return _fit(seed, data, net, steps, lr, make=NormalisedResNet, inputs=lambda x: (x - MEAN) / STD)


@pytest.fixture(scope="module")
def normalised_nets(splits):
    import copy

    owner = _fit_normalised(0, splits.owner)
    independent = [_fit_normalised(s, splits.attacker) for s in range(1, 9)]
    tuned = _fit_normalised(99, splits.tune, net=copy.deepcopy(owner), steps=60, lr=3e-4)
    pruned = copy.deepcopy(owner)
    with torch.no_grad():
        for p in pruned.parameters():
            if p.ndim > 1:  # half of every weight tensor, the smallest, set to 0
                p[p.abs() < p.abs().flatten().median()] = 0.0
    innocent = _fit_normalised(42, splits.attacker)
    return owner, independent, tuned, pruned, innocent


def test_a_normalised_tuple_returning_net_gets_the_right_verdicts(normalised_nets, splits):
    """mean= / std= given once, to fingerprint(): the fingerprint records them and calibrate and
    verify give them to every plain module (they were silently mean 0 / std 1: the owner itself
    came out no-match)."""
    owner, independent, tuned, pruned, innocent = normalised_nets
    fp = modelprint.fingerprint(
        owner, data=(splits.owner.x, splits.owner.y), method="ipguard", n=60, seed=0, mean=[MEAN], std=[STD]
    )
    assert fp.meta["source_mean"] == [MEAN] and fp.meta["source_std"] == [STD]
    fp = modelprint.calibrate(fp, references=independent)
    verdicts = [modelprint.verify(fp, m, fpr=0.01) for m in (owner, tuned, pruned, innocent)]
    assert [v.verdict for v in verdicts] == ["match", "match", "match", "no-match"], [
        (v.verdict, v.statistic, v.p_value) for v in verdicts
    ]
    assert all(not m.training for m in (owner, tuned, pruned, innocent))  # their modes as they came: eval


def test_verify_gives_a_module_back_in_the_mode_it_came_in(normalised_nets, splits):
    owner, independent = normalised_nets[0], normalised_nets[1]
    fp = modelprint.fingerprint(owner, data=splits.owner, method="c", n=5, steps=5, seed=0, mean=[MEAN], std=[STD])
    fp = modelprint.calibrate(fp, references=independent[:4])
    owner.train()
    try:
        modelprint.verify(fp, owner)
        assert owner.training and all(m.training for m in owner.modules())
    finally:
        owner.eval()


def test_a_normalised_net_without_its_normalisation_is_refused_not_fingerprinted(normalised_nets, splits):
    owner = normalised_nets[0]
    with pytest.raises(ParameterError, match=r"about chance .* preprocessing"):
        modelprint.fingerprint(owner, data=splits.owner, method="c", n=5, steps=5, seed=0, mean=[5.0], std=[0.01])
    fp = modelprint.fingerprint(
        owner, data=splits.owner, method="c", n=5, steps=5, seed=0, mean=[5.0], std=[0.01], check_accuracy=False
    )
    assert fp.meta["source_mean"] == [5.0]


def test_images_of_the_wrong_dtype_or_layout_are_named(splits, user_nets):
    owner = user_nets[0]
    pixels = (splits.owner.x * 255).to(torch.uint8)
    with pytest.raises(ParameterError, match=r"data x is uint8; give float images in \[0, 1\]"):
        modelprint.fingerprint(owner, data=(pixels, splits.owner.y))
    nhwc = torch.rand(32, 16, 16, 1)
    with pytest.raises(ParameterError, match="channels-last"):
        modelprint.fingerprint(owner, data=(nhwc, torch.zeros(32, dtype=torch.long)))


def test_outputs_of_any_common_shape_are_read_as_logits():
    from collections import namedtuple

    from modelprint.models.files import logits_of

    logits = torch.randn(2, 10)
    Out = namedtuple("Out", "logits features")
    for out in (logits, (logits, torch.ones(2, 3)), [logits], Out(logits, None), {"features": 1, "logits": logits}):
        assert logits_of(out) is logits
    assert logits_of({"scores": logits}) is logits
    with pytest.raises(ParameterError, match="returns str"):
        logits_of("logits")


def test_fingerprint_from_python_writes_the_file_fingerprint_create_writes(fresh, tmp_path, capsys, monkeypatch):
    """Every step of ``fingerprint create`` (tune, generate, calibrate on a reference set with
    screening; mark a white-box host first) is the API's: the same files, byte for byte."""
    from cli_run import run

    import modelprint.api as workflow
    from modelprint.models import save_model, weights_digest
    from modelprint.reference import ReferencePlan, build_reference_set

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    tunings = []

    def tuning(source, method, *, params, **settings):  # tuning's own training is tested in test_tune
        tunings.append((weights_digest(source), method, params, settings))
        return {**params, "steps": 7}, {"chosen": {"steps": 7}, "table": [], "grid": {"steps": [5, 7]}}

    monkeypatch.setattr(workflow, "tune_method", tuning)
    src = save_model(fresh, tmp_path / "src")
    plan = ReferencePlan(6, archs=[("cnn", {"width": 4})], epochs=1, students=False)
    build_reference_set(fresh, plan, tmp_path / "refs", positives=False, workers=0, progress=False)
    cli = ["fingerprint", "create", str(src), "--method", "c", "--n", "12", "--seed", "3", "--tune", "--fpr", "0.05"]
    cli += ["--reference-models", "3", "--epochs", "1", "--references", str(tmp_path / "refs"), "--screen", "6"]
    code, _, err = run([*cli, "--out", str(tmp_path / "cli.fp")], capsys)
    assert code == 0, err
    tune = modelprint.Tuning(fpr=0.05, references=3, epochs=1)
    fp = modelprint.fingerprint(src, method="c", n=12, seed=3, tune=tune, references=tmp_path / "refs", screen=6)
    fp.save(tmp_path / "api.fp")
    assert tunings[0] == tunings[1] and fp.meta["params"]["steps"] == 7 and fp.meta["screening"]["kept"] == 6
    assert (tmp_path / "cli.fp").read_bytes() == (tmp_path / "api.fp").read_bytes()

    cli = ["fingerprint", "create", str(src), "--method", "frequency", "--key", "5", "--host", "features.0"]
    cli += ["--mark", "epochs=1", "--marked-out", str(tmp_path / "cli.marked.safetensors")]
    code, _, err = run([*cli, "--out", str(tmp_path / "cli-wb.fp")], capsys)
    assert code == 0, err
    marked = {"host": "features.0", "epochs": 1}
    fp = modelprint.fingerprint(src, method="frequency", seed=5, mark=marked, marked_out=tmp_path / "api.marked")
    fp.save(tmp_path / "api-wb.fp")
    assert (tmp_path / "cli-wb.fp").read_bytes() == (tmp_path / "api-wb.fp").read_bytes()
    weights = [(tmp_path / f"{who}.marked.safetensors").read_bytes() for who in ("cli", "api")]
    cards = [json.loads((tmp_path / f"{who}.marked.json").read_text()) for who in ("cli", "api")]
    assert weights[0] == weights[1] and cards[0].pop("train_seconds") >= 0 and cards[1].pop("train_seconds") >= 0
    assert cards[0] == cards[1]


def test_calibrate_from_python_takes_what_fingerprint_calibrate_takes(fresh, negatives, tmp_path):
    """Model files, folders of them and modules calibrate alike; the origin says which."""
    from modelprint.models import save_model

    fp = modelprint.fingerprint(fresh, method="c", n=10, seed=0, steps=5)
    folder = tmp_path / "independent"
    paths = [save_model(m, folder / f"m{i}") for i, m in enumerate(negatives[:3])]
    by_files = modelprint.calibrate(fp, paths)
    by_folder = modelprint.calibrate(fp, folder)
    by_modules = modelprint.calibrate(fp, negatives[:3])
    assert by_files.meta["null"]["sha256"] == by_folder.meta["null"]["sha256"] == by_modules.meta["null"]["sha256"]
    assert by_files.meta["null"]["source"] == by_folder.meta["null"]["source"] == "3 files"
    assert by_modules.meta["null"]["source"] == "models"
    with pytest.raises(ParameterError, match="give independent models"):
        modelprint.calibrate(fp, [])
    with pytest.raises(ParameterError, match="give `data` as a data set spec"):
        x, y = torch.rand(20, 1, 8, 8), torch.arange(20) % 10
        modelprint.fingerprint(UserNet(), data=(x, y), tune=True, check_accuracy=False)
    with pytest.raises(ParameterError, match="`screen` chooses queries with a reference set: give `references` too"):
        modelprint.fingerprint(fresh, method="c", n=10, seed=0, screen=5)
