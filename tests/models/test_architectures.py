import pytest
import torch

from modelprint.errors import ParameterError, UnknownNameError
from modelprint.models import ARCHITECTURES, create_model
from modelprint.models.evasive import member_spec

SMALL_ARGS = {
    "cnn": {"width": 4},
    "resnet18": {"width": 4},
    "resnet34": {"width": 4},
    "vgg11": {"width": 4},
    "vgg13": {"width": 4},
    "vgg16": {"width": 4},
    "mobilenetv2": {"width": 0.25},
    "densenet": {"width": 4, "depth": 2},
    "vit-tiny": {"width": 16, "depth": 1, "heads": 2},
}
# A gated model's members are models themselves, with one mean and std per channel.
GATED = {"evasive"}


def small_args(name: str, shape: tuple[int, int, int]) -> dict:
    if name in GATED:
        member = member_spec("cnn", {"width": 4}, (0.5,) * shape[0], (0.25,) * shape[0])
        return {"model": member, "decoy": member, "detector_width": 4}
    return SMALL_ARGS[name]


def test_every_registered_architecture_has_small_args():
    assert set(ARCHITECTURES.names()) == set(SMALL_ARGS) | GATED


@pytest.mark.parametrize("name", sorted(set(SMALL_ARGS) | GATED))
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_contract_shapes_and_seed_determinism(name, shape):
    args = small_args(name, shape)
    a = create_model(name, num_classes=7, input_shape=shape, seed=3, **args).eval()
    b = create_model(name, num_classes=7, input_shape=shape, seed=3, **args).eval()
    c = create_model(name, num_classes=7, input_shape=shape, seed=4, **args).eval()
    x = torch.rand(3, *shape)
    out = a(x)
    assert out.shape == (3, 7)
    assert torch.equal(out, b(x))
    assert not torch.equal(out, c(x))


def test_unknown_architecture_and_bad_args():
    with pytest.raises(UnknownNameError, match="choose one of"):
        create_model("alexnet", num_classes=10, input_shape=(1, 8, 8))
    with pytest.raises(ParameterError):
        create_model("cnn", num_classes=10, input_shape=(1, 8, 8), wdith=3)
