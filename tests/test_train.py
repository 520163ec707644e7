import pytest

from modelprint.attacks import create_attack
from modelprint.errors import ParameterError
from modelprint.train import TrainConfig, arch_training, train_new, training_settings


def test_training_settings_go_from_general_to_particular():
    assert arch_training("cnn") == {}
    cnn = training_settings("cnn", {"epochs": 10, "lr": 0.05})
    assert cnn["optimizer"] == "sgd" and cnn["epochs"] == 10 and cnn["lr"] == 0.05
    vit = training_settings("vit-tiny", {"epochs": 10, "lr": 0.05})
    # the architecture's needs override the general table; its epoch_factor scales the general epochs
    assert vit["optimizer"] == "adam" and vit["lr"] == arch_training("vit-tiny")["lr"] and vit["epochs"] == 20
    # what is written for this one model wins, and is not scaled
    mine = training_settings("vit-tiny", {"epochs": 10}, {"epochs": 7, "optimizer": "sgd", "lr": 0.01})
    assert (mine["epochs"], mine["optimizer"], mine["lr"]) == (7, "sgd", 0.01)
    TrainConfig(**mine)
    with pytest.raises(ParameterError, match="unknown training setting"):
        training_settings("cnn", {"epochz": 3})
    with pytest.raises(ParameterError, match="optimizer"):
        training_settings("cnn", {}, {"optimizer": "lbfgs"})


def test_students_take_their_architectures_training_defaults():
    vit = create_attack("distill", arch="vit-tiny", epochs=10).train_config()
    assert vit.optimizer == "adam" and vit.epochs == 20 and vit.weight_decay == 0.0
    cnn = create_attack("knockoff", arch="cnn", epochs=10).train_config()
    assert cnn.optimizer == "sgd" and cnn.lr == 0.05 and cnn.epochs == 10
    forced = create_attack("distill", arch="vit-tiny", optimizer="sgd", lr=0.01).train_config()
    assert forced.optimizer == "sgd" and forced.lr == 0.01


def test_training_records_time_threads_and_settings(splits):
    model = train_new("cnn", splits.owner, TrainConfig(epochs=1), seed=0, test=splits.test, progress=False, width=4)
    assert model.card.train_seconds is not None and model.card.train_seconds > 0
    assert model.card.training["threads"] >= 1 and model.card.training["epochs"] == 1
