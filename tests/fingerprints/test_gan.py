import json

import pytest
import torch

from modelprint.errors import ModelFileError, ParameterError
from modelprint.fingerprints.naturalfinger.gan import (
    GANConfig,
    _optimizers,
    build_gan,
    hinge_losses,
    load_gan,
    save_gan,
    train_gan,
)

SMALL = GANConfig(width=16, z_dim=8, batch_size=32, steps=30, checkpoint_every=10)


@pytest.mark.parametrize("conditional", [True, False])
def test_one_step_lowers_each_networks_loss(splits, conditional):
    torch.manual_seed(0)
    config = GANConfig(**{**SMALL.__dict__, "conditional": conditional})
    gan = build_gan((1, 8, 8), config, num_classes=10)
    assert gan.conditional is conditional
    opt_g, opt_d = _optimizers(gan, config)
    real, labels = splits.owner.x[:32], splits.owner.y[:32].long() if conditional else None
    z = torch.randn(32, SMALL.z_dim, generator=torch.Generator().manual_seed(1))
    y = torch.arange(32) % 10 if conditional else None
    gan.generator.train()
    gan.discriminator.train()
    fake = gan.generate(z, y).detach()

    def d_loss() -> torch.Tensor:
        return hinge_losses(gan.realness(real, labels), gan.realness(fake, y))

    before = d_loss()
    opt_d.zero_grad()
    before.backward()
    opt_d.step()
    assert d_loss().item() < before.item()

    def g_loss() -> torch.Tensor:
        return -gan.realness(gan.generate(z, y), y).mean()

    before = g_loss()
    opt_g.zero_grad()
    before.backward()
    opt_g.step()
    assert g_loss().item() < before.item()


def test_training_is_seeded_and_resumes_to_the_same_weights(splits, tmp_path):
    a = train_gan(splits.owner, SMALL, seed=3, progress=False)
    b = train_gan(splits.owner, SMALL, seed=3, progress=False)
    z = torch.randn(4, SMALL.z_dim)
    assert torch.equal(a.sample(z), b.sample(z))
    # A 20-step run leaves a checkpoint at step 10; a 30-step run started from it ends where an uninterrupted one does.
    ckpt = tmp_path / "g.ckpt.safetensors"
    short = GANConfig(**{**SMALL.__dict__, "steps": 20})
    train_gan(splits.owner, short, seed=3, checkpoint=ckpt, progress=False)
    assert ckpt.is_file()
    resumed = train_gan(splits.owner, SMALL, seed=3, checkpoint=ckpt, progress=False)
    assert torch.equal(resumed.sample(z), a.sample(z))
    assert [h["step"] for h in resumed.card["history"]] == [h["step"] for h in a.card["history"]]
    other = train_gan(splits.owner, SMALL, seed=4, progress=False)
    assert not torch.equal(other.sample(z), a.sample(z))
    with pytest.raises(ParameterError, match="another GAN run"):
        train_gan(splits.owner, SMALL, seed=5, checkpoint=ckpt, progress=False)


def test_file_round_trip_with_card_and_sample_grid(splits, tmp_path):
    gan = train_gan(splits.owner, GANConfig(**{**SMALL.__dict__, "steps": 5}), seed=0, progress=False)
    path = save_gan(gan, tmp_path / "g.safetensors")
    assert path.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["dataset"] == "digits" and card["split"] == "owner" and len(card["data_sha256"]) == 64
    assert card["input_shape"] == [1, 8, 8] and card["train_seconds"] >= 0
    loaded = load_gan(path)
    z = torch.randn(3, SMALL.z_dim)
    assert torch.equal(loaded.sample(z), gan.sample(z))
    x = loaded.sample(z)
    assert x.shape == (3, 1, 8, 8) and x.min() >= 0 and x.max() <= 1


def test_bad_gan_files_get_one_clear_error(splits, tmp_path):
    gan = train_gan(splits.owner, GANConfig(**{**SMALL.__dict__, "steps": 2}), seed=0, progress=False)
    path = save_gan(gan, tmp_path / "g.safetensors", grid=False)
    with pytest.raises(ModelFileError, match="not found"):
        load_gan(tmp_path / "missing.safetensors")
    card = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**card, "kind": "something else"}))
    with pytest.raises(ModelFileError, match="not a modelprint GAN card"):
        load_gan(path)
    path.with_suffix(".json").write_text(json.dumps({**card, "config": {**card["config"], "width": 32}}))
    with pytest.raises(ModelFileError, match="do not fit"):
        load_gan(path)
    path.with_suffix(".json").write_text(json.dumps(card))
    path.write_bytes(b"not safetensors")
    with pytest.raises(ModelFileError, match="not a readable"):
        load_gan(path)


def test_a_conditional_gan_draws_the_class_it_is_asked_for(splits, tmp_path):
    gan = train_gan(splits.owner, GANConfig(**{**SMALL.__dict__, "steps": 3}), seed=0, progress=False)
    assert gan.conditional and gan.num_classes == 10 and gan.card["config"]["conditional"] is True
    z = torch.randn(1, SMALL.z_dim).repeat(10, 1)
    x = gan.sample(z, torch.arange(10))
    assert not torch.equal(x[0], x[1])  # same latent, another class, another image
    d = gan.realness(x, torch.arange(10))
    assert not torch.allclose(d, gan.realness(x, (torch.arange(10) + 1) % 10))  # the projection term
    with pytest.raises(ParameterError, match="needs a class"):
        gan.generate(z, None)
    # a GAN file from before conditioning has no such setting and loads as the unconditional networks
    plain = train_gan(splits.owner, GANConfig(**{**SMALL.__dict__, "steps": 2, "conditional": False}), seed=0,
                      progress=False)  # fmt: skip
    path = save_gan(plain, tmp_path / "old.safetensors", grid=False)
    card = json.loads(path.with_suffix(".json").read_text())
    del card["config"]["conditional"]
    path.with_suffix(".json").write_text(json.dumps(card))
    old = load_gan(path)
    assert not old.conditional and torch.equal(old.sample(z), plain.sample(z))


def test_shapes_the_gan_cannot_make_are_refused():
    with pytest.raises(ParameterError, match="divisible by 4"):
        build_gan((1, 10, 10), SMALL)
    with pytest.raises(ParameterError, match="channels"):
        build_gan((2, 8, 8), SMALL)
