"""One contract over every registered fingerprint method, run end to end on a tiny model:
prepare (where the method changes the model first) -> generate -> save -> load -> evidence ->
calibrate -> verify. A new family is checked here the moment it registers; the settings
below only shorten the searches, so a family missing from them runs at its defaults."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from modelprint.calibrate import calibrate
from modelprint.fingerprints import METHODS, Fingerprint, FingerprintMethod, create_method, method_of
from modelprint.fingerprints.naturalfinger.gan import GANConfig, save_gan, train_gan
from modelprint.models import load_model
from modelprint.models.attachments import attachment_hosts, attachment_names
from modelprint.null import Null
from modelprint.verify import verify
from modelprint.zoo import ZooManifest, source_row

# Shorter searches at test scale; files (GAN, training zoo) are filled in by the fixture.
FAST: dict[str, dict] = {
    **{name: {"steps": 20} for name in ("c", "rc", "rcgm", "ltrc", "ltrcgm", "ipguard", "sensitive")},
    "metafinger": {"iterations": 20, "trained": "{zoo}"},
    "metav": {"iterations": 40, "trained": "{zoo}"},
    "naturalfinger": {"iterations": 30, "screen_draws": 2, "gan": "{gan}", "trained": "{zoo}", "fill": True},
    "dataset-inference": {"train_points": 60, "directions": 2, "max_steps": 20, "step": 0.05},
    "dataset-inference-mingd": {"train_points": 30, "max_steps": 10, "step": 0.1},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory, splits, training_zoo):
    gan = train_gan(splits.owner, GANConfig(width=32, z_dim=16, steps=200), seed=0, progress=False)
    gan_path = save_gan(gan, tmp_path_factory.mktemp("contract") / "gan.safetensors", grid=False)
    manifest = ZooManifest.read(training_zoo)
    return {"zoo": str(training_zoo), "gan": str(gan_path), "source": load_model(manifest.path(source_row(manifest)))}


def settings_for(name: str, files: dict) -> dict:
    return {k: v.format(**files) if isinstance(v, str) else v for k, v in FAST.get(name, {}).items()}


def prepared(method, source, splits):
    """The model the method generates from: prepared with its first usable host where it marks a layer."""
    if not method.needs_preparation(source):
        return source
    hosts = {h for a in attachment_names() for h in attachment_hosts(a, source.net, source.card.input_shape, k=4)}
    settings = {"host": sorted(hosts)[0], "k": 4, "epochs": 1} if "host" in method.prepare_settings else {}
    return method.prepare(source, splits.owner, key=3, test=splits.test, progress=False, **settings)


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_keeps_the_contract(name, files, splits, negatives, tmp_path):
    check_contract(name, files, splits, negatives, tmp_path)


@dataclass(kw_only=True)
class BoundaryNoise(FingerprintMethod):
    """A toy black-box family, all a new family needs: uniform noise images nudged towards the
    source's decision boundary, labelled by the source (the base class does the rest).

    Example::

        fp = create_method("toy-boundary-noise").generate(source, n=50, seed=0)
    """

    steps: int = 5

    def _generate(self, model, data, *, n, seed, device, progress):
        g = torch.Generator().manual_seed(seed)
        x = torch.rand((n, *model.card.input_shape), generator=g).requires_grad_(True)
        for _ in range(self.steps):  # lower the top logit's lead: points near the boundary
            logits = model(x)
            top2 = logits.topk(2, dim=1).values
            (grad,) = torch.autograd.grad((top2[:, 0] - top2[:, 1]).sum(), x)
            x = (x - 0.05 * grad.sign()).clamp(0, 1).detach().requires_grad_(True)
        x = x.detach()
        return x, model.predict(x), {}, {}


def test_a_new_family_is_one_class_and_its_registration(files, splits, negatives, tmp_path):
    METHODS.register("toy-boundary-noise")(BoundaryNoise)
    try:
        check_contract("toy-boundary-noise", files, splits, negatives, tmp_path)
    finally:
        METHODS._items.pop("toy-boundary-noise")


def check_contract(name, files, splits, negatives, tmp_path):
    method = create_method(name, **settings_for(name, files))
    source = prepared(method, files["source"], splits)
    fp = method.generate(source, n=12, seed=5, progress=False)
    again = create_method(name, **settings_for(name, files)).generate(source, n=12, seed=5, progress=False)
    assert torch.equal(fp.x, again.x) and torch.equal(fp.y, again.y), "generation is not deterministic"
    assert all(torch.equal(fp.extra[k], again.extra[k]) for k in fp.extra)
    assert fp.meta["method"] == name and fp.meta["seed"] == 5 and fp.meta["source_sha256"]
    assert isinstance(method.summary(fp), str) and method.summary(fp)

    fp.save(tmp_path / "fp.safetensors")
    loaded = Fingerprint.load(tmp_path / "fp.safetensors")
    assert torch.equal(loaded.x, fp.x) and loaded.meta["params"] == method.params()
    again_method = method_of(loaded)
    assert type(again_method) is type(method) and again_method.params() == method.params()

    items = method.items(loaded)
    own = method.evidence(loaded, source)
    assert own.values.shape == (items,) and np.isfinite(own.values).all() and items >= 1
    assert own.kind == method.evidence_kind and own.queries >= 0
    if own.kind == "labels":  # one query per label; scores and white-box evidence may cost more or none
        assert own.queries == items
    stat_source = method.statistic(own.values)
    stat_negatives = [method.statistic(method.evidence(loaded, m).values) for m in negatives]
    if method.evidence_of == "lineage":  # a training-data method is checked on a source that memorised, in its tests
        assert stat_source >= max(stat_negatives), f"{name}: an independent model scores above the source itself"

    cal = calibrate(loaded, negatives)
    null = Null.from_json(cal.meta["null"])
    assert null.fits(method.null_family) and len(cal.meta["null"]["sha256"]) == len(negatives)
    assert cal.meta["null"]["n_models"] + cal.meta["null"].get("left_out", 0) == len(negatives)
    cal.save(tmp_path / "cal.safetensors")
    cal = Fingerprint.load(tmp_path / "cal.safetensors")
    assert Null.from_json(cal.meta["null"]).to_json() == cal.meta["null"]

    on_source = verify(cal, source, fpr=0.05)
    assert on_source.calibrated and on_source.method == name and on_source.statistic == pytest.approx(stat_source)
    assert on_source.p_value is not None
    if method.evidence_of == "lineage":
        assert on_source.p_value <= min(verify(cal, m).p_value for m in negatives)
    assert (on_source.verdict == "match") == (on_source.p_value < 0.05) and on_source.null["calibrated"]


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_says_where_it_comes_from(name):
    """A dispute report cites the method's paper (or says it has none)."""
    paper = METHODS.get(name).paper
    cited = any(str(year) in paper for year in range(2015, 2030)) or "NaturalFinger" in paper
    assert len(paper) > 20 and (paper.startswith("no paper:") or cited), paper
