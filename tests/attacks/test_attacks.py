"""Contract and behaviour tests for every registered attack, on the tiny digits CNN."""

import pytest
import torch

from modelprint.attacks import ATTACKS, create_attack
from modelprint.attacks.finetune import last_layer
from modelprint.attacks.prune import prunable_weights
from modelprint.attacks.reparam import layer_pairs
from modelprint.errors import ParameterError
from modelprint.models import create_model, load_model, save_model, weights_digest
from modelprint.train import accuracy

from ..models.test_architectures import SMALL_ARGS

# Small settings per attack so the whole file runs in seconds; accuracy bounds are per attack.
SETTINGS = {
    "finetune": {"mode": "ftal", "epochs": 3},
    "prune": {"rate": 0.3},
    "noise": {"sigma": 0.05},
    "advtrain": {"p": 0.5, "eps": 0.1, "alpha": 0.03, "steps": 3, "epochs": 3},
    "distill": {"arch": "cnn", "arch_args": {"width": 8}, "epochs": 8},
    "evade": {"clean": 300, "detector_epochs": 3, "decoy_epochs": 3, "decoy_args": {"width": 8}},
    "knockoff": {"arch": "cnn", "arch_args": {"width": 8}, "epochs": 8},
    "quantize": {},
    "permute": {},
    "scale": {},
    "overwrite": {"how": "weight-noise"},
    "spectral-reset": {},
    "nullspace-reset": {},
}
# Attacks on the white-box frequency mark run on a marked copy of the source.
WHITE_BOX = {"overwrite", "spectral-reset", "nullspace-reset"}
# How much test accuracy each attack may cost the tiny source (extraction trains from scratch).
MAX_DROP = {"distill": 0.25, "knockoff": 0.3, "advtrain": 0.15, "noise": 0.1, "overwrite": 0.5}


@pytest.fixture(scope="module")
def marked_source(source, splits):
    from modelprint.fingerprints.frequency import inject

    return inject(source, splits.owner, host="features.0", key=7, aux_class=False, epochs=2, test=splits.test,
                  progress=False)  # fmt: skip


def _data_for(name, splits):
    return splits.get(ATTACKS.get(name).default_split) if ATTACKS.get(name).needs_data else None


def test_every_registered_attack_has_settings_here():
    assert set(ATTACKS.names()) == set(SETTINGS)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_attack_contract(name, source, marked_source, splits, tmp_path):
    source = marked_source if name in WHITE_BOX else source
    attack = create_attack(name, **SETTINGS[name])
    data = _data_for(name, splits)
    before = {k: v.clone() for k, v in source.state_dict().items()}
    a = attack.apply(source, data, seed=3, test=splits.test)
    b = attack.apply(source, data, seed=3)
    # the victim is untouched; the same seed gives the same weights
    assert all(torch.equal(v, before[k]) for k, v in source.state_dict().items())
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    # lineage: the parent's hash and the full recipe
    step = a.card.lineage[-1]
    assert step["parent_sha256"] == weights_digest(source)
    assert step["recipe"] == {"attack": name, **attack.params(), "seed": 3}
    assert a.card.accuracy >= source.card.accuracy - MAX_DROP.get(name, 0.05)
    # a normal model file that loads back to the same function
    save_model(a, tmp_path / name)
    loaded = load_model(tmp_path / f"{name}.safetensors")
    assert torch.allclose(loaded(splits.test.x[:16]), a(splits.test.x[:16]), atol=1e-5)
    assert attack.step_id().startswith(name)


@pytest.mark.parametrize("name", ["finetune", "advtrain", "distill", "knockoff"])
def test_training_attacks_need_data(name, source):
    with pytest.raises(ParameterError, match="needs data"):
        create_attack(name).apply(source)


@pytest.mark.parametrize("mode", ["ftll", "ftal", "rtll", "rtal"])
def test_finetune_modes_change_the_layers_they_name(mode, source, splits):
    tuned = create_attack("finetune", mode=mode).apply(source, splits.tune, seed=1)
    head_before, head_after = last_layer(source), last_layer(tuned)
    head_ids = {id(p) for p in head_before.parameters()}
    after = dict(tuned.named_parameters())
    body_changed = any(not torch.equal(p, after[n]) for n, p in source.named_parameters() if id(p) not in head_ids)
    assert not torch.equal(head_before.weight, head_after.weight)
    assert body_changed == mode.endswith("al")
    if mode.endswith("ll"):  # frozen body includes its batch-norm statistics
        buffers = dict(tuned.named_buffers())
        assert all(torch.equal(b, buffers[n]) for n, b in source.named_buffers())
    assert accuracy(tuned, splits.test) >= source.card.accuracy - (0.15 if mode.startswith("rt") else 0.05)


def test_noise_is_scaled_to_each_layer(source):
    noisy = create_attack("noise", sigma=0.2).apply(source, seed=0)
    for w0, w1 in zip(prunable_weights(source), prunable_weights(noisy)):
        rms = w0.norm() / w0.numel() ** 0.5
        ratio = ((w1 - w0).norm() / w0.numel() ** 0.5 / rms).item()
        assert ratio == pytest.approx(0.2, rel=0.35 if w0.numel() < 500 else 0.1)


def test_adversarial_examples_stay_in_the_ball_and_fool_the_model(source, splits):
    from modelprint.attacks.advtrain import pgd

    x, y = splits.test.x[:64], splits.test.y[:64]
    adv = pgd(source, x, y, eps=0.1, alpha=0.03, steps=5, g=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert (source.predict(adv) == y).float().mean() < (source.predict(x) == y).float().mean() - 0.2


def test_extraction_builds_the_requested_architecture(source, splits):
    student = create_attack("distill", arch="vgg11", arch_args={"width": 8}, epochs=1).apply(source, splits.attacker)
    assert student.card.arch == "vgg11" and student.card.arch_args == {"width": 8}
    assert student.card.lineage[-1]["recipe"]["arch"] == "vgg11"
    assert student.card.mean == source.card.mean and student.card.classes == source.card.classes
    with pytest.raises(Exception, match="unknown architecture"):
        create_attack("distill", arch="resnet1000")


def test_knockoff_class_shift_and_budget(source, splits):
    k = create_attack("knockoff", classes=[0, 1, 2], budget=50, epochs=1, arch_args={"width": 8})
    student = k.apply(source, splits.attacker, seed=0)
    assert student.card.lineage[-1]["recipe"]["classes"] == [0, 1, 2]
    with pytest.raises(ParameterError, match="transfer set"):
        create_attack("knockoff", classes=[99]).apply(source, splits.attacker)


ARCHS = {a: SMALL_ARGS[a] for a in ("cnn", "resnet18", "vgg11", "mobilenetv2", "densenet", "vit-tiny")}


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("name", ["permute", "scale"])
def test_function_preserving_attacks_keep_the_logits(arch, name):
    model = create_model(arch, num_classes=10, input_shape=(3, 16, 16), seed=0, **ARCHS[arch])
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    model.train()
    model(x)  # one batch so batch-norm statistics are not the identity
    model.eval()
    if name == "scale" and arch in ("mobilenetv2", "vit-tiny"):  # ReLU6 and GELU are not homogeneous
        with pytest.raises(ParameterError, match="rescale"):
            create_attack(name).apply(model)
        return
    twin = create_attack(name).apply(model, seed=5)
    changed = sum(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))
    assert changed >= 2
    ref, out = model(x), twin(x)
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
    assert torch.equal(out.argmax(1), ref.argmax(1))


def test_layer_pairs_cover_the_cnn(source):
    pairs = layer_pairs(source.net)
    assert len(pairs) == len(prunable_weights(source)) - 1  # every conv feeds the next layer alone


@pytest.mark.parametrize("granularity", ["channel", "tensor"])
def test_int8_quantisation_rounds_to_255_levels(source, splits, granularity):
    q = create_attack("quantize", granularity=granularity).apply(source)
    for w0, w in zip(prunable_weights(source), prunable_weights(q)):
        groups = w.flatten(1) if granularity == "channel" else w.flatten()[None]
        for row in groups:
            assert len(torch.unique(row)) <= 255
        peak = (
            w0.abs().flatten(1).amax(1).view(-1, *[1] * (w0.ndim - 1)) if granularity == "channel" else w0.abs().max()
        )
        assert ((w - w0).abs() <= peak / 127 / 2 + 1e-7).all()
    assert accuracy(q, splits.test) >= source.card.accuracy - 0.02
    half = create_attack("quantize", dtype="fp16").apply(source)
    assert all(torch.equal(p, p.half().float()) for p in half.parameters())


def test_white_box_attacks_refuse_unmarked_models_and_spectral_reset_keeps_the_function(source, marked_source, splits):
    from modelprint.fingerprints import create_method

    for name in sorted(WHITE_BOX):
        with pytest.raises(ParameterError, match="no frequency module"):
            create_attack(name).apply(source, _data_for(name, splits))
    reset = create_attack("spectral-reset").apply(marked_source, seed=0)
    x = splits.test.x[:64]
    assert torch.allclose(reset.eval()(x), marked_source.eval()(x), atol=1e-5)
    fp = create_method("frequency").generate(marked_source, n=8, seed=7, progress=False)
    method = create_method("frequency")
    assert method.statistic(method.evidence(fp, marked_source).values) == 1.0
    assert method.statistic(method.evidence(fp, reset).values) == 0.0
    replaced = create_attack("overwrite", how="replace").apply(marked_source, seed=0)
    assert method.statistic(method.evidence(fp, replaced).values) == 0.0
    # The same erasure found with gradients alone, knowing neither P nor K: a secret projection would not help.
    blind = create_attack("nullspace-reset").apply(marked_source, splits.attacker, seed=0)
    assert torch.allclose(blind.eval()(x), marked_source.eval()(x), atol=1e-5)
    assert method.statistic(method.evidence(fp, blind).values) == 0.0
