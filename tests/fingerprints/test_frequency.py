"""The frequency module's invariance: what no gradient reaches, SGD cannot change."""

import copy

import pytest
import torch
import torch.nn.functional as F

from modelprint.errors import ParameterError
from modelprint.fingerprints.frequency import (
    attach,
    hostable_layers,
    invariant_mask,
    inverse_spectrum,
    lowpass_projection,
    spectrum,
)
from modelprint.models import create_model

SHAPE = (1, 16, 16)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten(), b.flatten()
    return float((torch.vdot(a, b).real / (a.abs().norm() * b.abs().norm())).item())


def test_projection_is_k_periodic_idempotent_and_low_pass():
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    p = lowpass_projection(x, 8, 1)
    assert torch.allclose(p, torch.roll(p, 8, dims=-1)) and torch.allclose(p, torch.roll(p, 8, dims=-2))
    assert torch.allclose(lowpass_projection(p, 8, 1), p)
    with pytest.raises(ParameterError, match="multiple of K"):
        lowpass_projection(torch.rand(1, 1, 12, 12), 8, 1)


def test_transform_round_trip_and_mask():
    w = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    assert torch.allclose(inverse_spectrum(spectrum(w)), w)
    mask = invariant_mask(8, 1)
    assert mask.sum() == 64 - 9 and not mask[0, 0] and not mask[7, 1] and mask[2, 0]


def _finetune(model, branch, splits, optimizer: str, steps: int = 150):
    params = list(model.parameters())
    opt = (
        torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
        if optimizer == "sgd"
        else getattr(torch.optim, optimizer)(params, lr=1e-3)
    )
    g = torch.Generator().manual_seed(0)
    x, y = splits.attacker.x, splits.attacker.y
    x = F.interpolate(x, size=SHAPE[1:], mode="bilinear", align_corners=False)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("host", ["net.features.0", "net.features.4"])
def test_sgd_fine_tuning_keeps_the_invariant_components(host, splits):
    torch.manual_seed(0)
    model = create_model("cnn", num_classes=10, input_shape=SHAPE, width=8)
    k = 8 if host.endswith(".0") else 4
    branch = attach(model, host, SHAPE, k=k, cutoff=1, seed=3)
    before = spectrum(branch.weight.detach().clone())
    _finetune(model, branch, splits, "sgd")
    after = spectrum(branch.weight.detach())
    inv = invariant_mask(k, 1)
    assert _cos(before[..., inv], after[..., inv]) >= 0.9999
    assert _cos(before[..., ~inv], after[..., ~inv]) < 0.99  # the components that matter did move


def test_adam_breaks_the_invariance(splits):
    """Adam's per-weight normalisation mixes the components: the guarantee is SGD's only."""
    torch.manual_seed(0)
    model = create_model("cnn", num_classes=10, input_shape=SHAPE, width=8)
    branch = attach(model, "net.features.0", SHAPE, k=8, cutoff=1, seed=3)
    before = spectrum(branch.weight.detach().clone())
    _finetune(model, branch, splits, "Adam")
    inv = invariant_mask(8, 1)
    assert _cos(before[..., inv], spectrum(branch.weight.detach())[..., inv]) < 0.9999


def test_hostable_layers_and_clear_errors():
    model = create_model("cnn", num_classes=10, input_shape=SHAPE, width=8)
    layers = hostable_layers(model, SHAPE, k=8)
    # 16x16 and 8x8 grids take K = 8; the third conv runs on 4x4, which K = 8 does not divide.
    assert set(layers) == {"net.features.0", "net.features.4"} and layers["net.features.4"] == (8, 16)
    with pytest.raises(ParameterError, match="cannot host"):
        attach(copy.deepcopy(model), "net.classifier", SHAPE)


@pytest.mark.parametrize(
    "arch, args",
    [
        ("cnn", {"width": 8}),
        ("resnet18", {"width": 4}),
        ("vgg11", {"width": 4}),
        ("mobilenetv2", {"width": 0.25}),
        ("densenet", {"width": 4, "depth": 2}),
        ("vit-tiny", {"width": 16, "depth": 1}),
    ],
)
def test_every_family_hosts_the_module_and_the_model_file_keeps_it(arch, args, tmp_path):
    from modelprint.models import load_model, save_model

    shape = (1, 16, 16)
    plain = create_model(arch, num_classes=10, input_shape=shape, **args)
    host = next(iter(hostable_layers(plain.net, shape, k=8)))
    model = create_model(arch, num_classes=10, input_shape=shape, frequency={"host": host, "k": 8}, **args)
    branch = model.net.get_submodule(host).branch
    torch.nn.init.normal_(branch.weight)
    x = torch.rand(4, *shape)
    model.eval()
    with torch.no_grad():
        out = model(x)
    loaded = load_model(save_model(model, tmp_path / arch)).eval()
    assert loaded.card.arch_args["frequency"] == {"host": host, "k": 8}
    assert torch.equal(loaded.net.get_submodule(host).branch.weight, branch.weight)
    with torch.no_grad():
        assert torch.allclose(loaded(x), out, atol=1e-6)
        torch.nn.init.zeros_(branch.weight)  # without the branch's weights: the plain network's function
        plain.load_state_dict({k.replace(f"{host}.host.", f"{host}."): v for k, v in model.state_dict().items()
                               if ".branch." not in k})  # fmt: skip
        assert torch.allclose(model(x), plain.eval()(x), atol=1e-5)


def test_bad_frequency_settings_are_one_clear_error():
    with pytest.raises(ParameterError, match="unknown setting"):
        create_model("cnn", num_classes=10, input_shape=SHAPE, frequency={"host": "features.0", "size": 8})
    with pytest.raises(ParameterError, match="cannot host"):
        create_model("cnn", num_classes=10, input_shape=SHAPE, frequency={"host": "features.8"})


# --- the mark: injection, score, equivariance, overwriting, spectral reset ---------------------------------


@pytest.fixture(scope="module")
def marked(splits):
    from modelprint.fingerprints.frequency import inject
    from modelprint.train import TrainConfig, train_new

    src = train_new("cnn", splits.owner, TrainConfig(epochs=6), seed=0, test=splits.test, width=8)
    with_attack = inject(src, splits.owner, host="features.0", key=7, epochs=5, test=splits.test, progress=False)
    plain = inject(src, splits.owner, host="features.0", key=7, aux_class=False, epochs=5, test=splits.test,
                   progress=False)  # fmt: skip
    other_key = inject(src, splits.owner, host="features.0", key=8, epochs=1, progress=False)
    return {"source": src, "marked": with_attack, "plain": plain, "other": other_key}


def _score(fp, model):
    from modelprint.fingerprints import create_method

    method = create_method("frequency")
    return method.statistic(method.evidence(fp, model).values)


def test_score_is_one_for_the_mark_and_its_sgd_fine_tuned_copy_and_zero_otherwise(marked, splits):
    from modelprint.attacks import create_attack
    from modelprint.fingerprints import create_method

    fp = create_method("frequency").generate(marked["marked"], n=12, seed=7, progress=False)
    assert len(fp.extra["freqs"]) == 12 and fp.meta["host"] == "features.0" and len(fp.x) == 0
    tuned = create_attack("finetune", mode="ftal", epochs=3, lr=0.01).apply(marked["marked"], splits.tune, seed=3)
    assert _score(fp, marked["marked"]) == 1.0 and _score(fp, tuned) == 1.0
    assert _score(fp, marked["other"]) == 0.0  # another owner's key
    assert _score(fp, marked["source"]) == 0.0  # no module at all: similarity 0, no error


def test_score_is_equivariant_to_channel_permutation_and_scaling(marked):
    from modelprint.fingerprints import create_method
    from modelprint.fingerprints.frequency import branch_of

    fp = create_method("frequency").generate(marked["marked"], n=12, seed=7, progress=False)
    attacked = copy.deepcopy(marked["marked"])
    w = branch_of(attacked, "features.0").weight
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out_perm = torch.randperm(w.shape[0], generator=g)
        w.copy_(3.7 * w[out_perm])
    assert _score(fp, attacked) == 1.0
    sims = create_method("frequency").evidence(fp, attacked).values
    assert sims.min() > 0.9999


def test_overwriting_costs_accuracy_with_l_attack_and_spectral_reset_costs_nothing(marked, splits):
    from modelprint.attacks import create_attack
    from modelprint.fingerprints import create_method
    from modelprint.fingerprints.frequency import branch_of, overwritten_weight
    from modelprint.train import accuracy

    def overwritten(model, how):
        m = copy.deepcopy(model)
        b = branch_of(m, "features.0")
        with torch.no_grad():
            b.weight.copy_(overwritten_weight(b.weight, how, torch.Generator().manual_seed(1)))
        return m

    attacked = overwritten(marked["marked"], "replace")
    aux = marked["source"].card.num_classes  # the auxiliary class's index
    pushed = (attacked.predict(splits.test.x) == aux).float().mean().item()
    assert pushed > 0.5 and accuracy(attacked, splits.test) < marked["marked"].card.accuracy - 0.3
    assert (overwritten(marked["plain"], "replace").predict(splits.test.x) < aux).all()  # no such class without it
    # The adaptive attack: zero exactly the components no output depends on.
    fp = create_method("frequency").generate(marked["marked"], n=12, seed=7, progress=False)
    reset = create_attack("spectral-reset").apply(marked["marked"], seed=0)
    with torch.no_grad():
        x = splits.test.x[:100]
        assert torch.allclose(reset.eval()(x), marked["marked"].eval()(x), atol=1e-5)
    assert _score(fp, reset) == 0.0


def test_reference_models_carry_an_output_neutral_mark_of_their_own_key(marked, splits):
    from modelprint.fingerprints import create_method
    from modelprint.fingerprints.frequency import branch_of, neutral_mark, passband, spectrum

    method = create_method("frequency")
    fp = method.generate(marked["marked"], n=12, seed=7, progress=False)
    ref = method.reference_model(fp, marked["source"], seed=1000)
    branch = branch_of(ref, "features.0")
    assert branch is not None and ref.card.lineage[-1]["recipe"]["key"] == 1000
    assert spectrum(branch.weight)[..., passband(8, 1)].abs().max() < 1e-6  # nothing reaches the output
    with torch.no_grad():
        x = splits.test.x[:100]
        assert torch.allclose(ref.eval()(x), marked["source"].eval()(x), atol=1e-5)
    assert _score(fp, ref) == 0.0
    # The fingerprint's own key is never used for a reference model.
    assert method.reference_model(fp, marked["source"], seed=7).card.lineage[-1]["recipe"]["key"] == 8
    # A neutral mark with the owner's key holds the owner's invariant components: score 1.
    assert _score(fp, neutral_mark(marked["source"], "features.0", 7)) == 1.0
    # Models that cannot host the module, or already carry one, are left as they are.
    assert method.reference_model(fp, marked["other"], seed=1000) is marked["other"]


@pytest.mark.parametrize("attack", ["permute", "scale"])
def test_function_preserving_reparametrisations_move_the_module_with_its_host(marked, splits, attack):
    from modelprint.attacks import create_attack
    from modelprint.fingerprints import create_method
    from modelprint.fingerprints.frequency import branch_of

    fp = create_method("frequency").generate(marked["marked"], n=12, seed=7, progress=False)
    twin = create_attack(attack).apply(marked["marked"], seed=1)
    before, after = branch_of(marked["marked"], "features.0").weight, branch_of(twin, "features.0").weight
    if attack == "permute":  # (scaling goes into the batch norm after the host here, not the module)
        assert not torch.allclose(before, after)  # the module's channels moved with the host's
    with torch.no_grad():
        x = splits.test.x[:100]
        assert torch.allclose(twin.eval()(x), marked["marked"].eval()(x), atol=1e-4)
    assert _score(fp, twin) == 1.0


def test_the_null_is_fitted_on_simulated_keys_that_look_like_reference_models(marked):
    """The simulated keys are what a reference model with a neutral mark shows the fingerprint
    (same similarities), so the null needs no floor: its p-values come from 2000 keys."""
    import numpy as np

    from modelprint.calibrate import calibrate
    from modelprint.fingerprints import create_method
    from modelprint.fingerprints.frequency import neutral_mark
    from modelprint.fingerprints.frequency.method import SIMULATED_KEY_SEED
    from modelprint.verify import verify

    method = create_method("frequency", simulated_keys=300)
    fp = method.generate(marked["marked"], n=12, seed=7, progress=False)
    sims = method.independent_keys(fp)
    assert sims.shape == (300, 12)
    as_reference = neutral_mark(marked["source"], "features.0", SIMULATED_KEY_SEED + 5)
    assert np.allclose(sims[5], method.evidence(fp, as_reference).values, atol=1e-6)
    refs = [method.reference_model(fp, marked["source"], seed=s) for s in (1000, 1001, 1002)]
    calibrated = calibrate(fp, refs)
    null = calibrated.meta["null"]
    assert null["family"] == "key-tail" and null["keys"] == 300 and null["q_upper"] < 0.02
    assert verify(calibrated, marked["marked"], fpr=1e-3).verdict == "match"
    assert verify(calibrated, marked["other"], fpr=1e-3).verdict == "no-match"
    smallest = verify(calibrated, marked["marked"], fpr=1e-3).null["smallest_p"]
    assert smallest == pytest.approx(null["q_upper"] ** 12)
