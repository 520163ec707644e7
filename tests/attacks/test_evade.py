"""The thief who filters queries: an evasive model answers perturbed queries with a decoy's
labels and clean images with the stolen model's, in every form a suspect takes."""

import copy
import json

import pytest
import torch

from modelprint.attacks import create_attack
from modelprint.errors import ModelFileError, ParameterError
from modelprint.export import export_model
from modelprint.models import load_model, save_model
from modelprint.serve import create_app, serve_background
from modelprint.stealth import fgsm
from modelprint.suspects import open_suspect
from modelprint.suspects.http_api import HttpSuspect

SMALL = {"clean": 400, "detector_epochs": 8, "decoy_epochs": 4, "decoy_args": {"width": 8}}


@pytest.fixture(scope="module")
def evasive(source, splits):
    return create_attack("evade", **SMALL).apply(source, splits.attacker, seed=2, test=splits.test)


@pytest.fixture(scope="module")
def probes(source, splits):
    """Clean held-out images and FGSM examples against the stolen model (what C-like queries look like)."""
    x = splits.test.x[:120]
    return x, fgsm(source, x, source.predict(x), 0.1)


def test_perturbed_queries_get_the_decoys_answers_and_clean_images_the_stolen_models(evasive, source, probes):
    clean, perturbed = probes
    net = evasive.net
    with torch.no_grad():
        flagged_clean, flagged_perturbed = net.flagged(clean), net.flagged(perturbed)
        decoy, stolen = net.decoy(perturbed).argmax(1), net.model(perturbed).argmax(1)
    # at 8 pixels and 400 images the detector is weak; the gate's logic is what is tested here
    assert flagged_clean.float().mean() <= 0.1 and 0.4 <= flagged_perturbed.float().mean() < 1
    answers = evasive.predict(perturbed)
    assert torch.equal(answers[flagged_perturbed], decoy[flagged_perturbed])
    assert torch.equal(answers[~flagged_perturbed], stolen[~flagged_perturbed])
    # the stolen model inside is the source, bit for bit; on clean images the thief serves it
    assert torch.equal(net.model(clean), source.net(source_normalised(source, clean)))
    assert (evasive.predict(clean) == source.predict(clean)).float().mean() >= 0.9
    assert (decoy != stolen).any(), "the decoy answers like the stolen model: the gate would change nothing"


def test_the_threshold_is_set_on_eval_mode_margins_and_moves_no_running_statistics(evasive, splits):
    """It was once set from margins computed in training mode: batch statistics put it far
    above every clean image's margin, and the gate let the C family's queries through."""
    net = copy.deepcopy(evasive.net).train()
    buffers = {k: v.clone() for k, v in net.named_buffers() if k != "threshold"}
    clean = splits.test.x
    flagged = net.set_threshold(clean, 0.05)
    assert net.training and all(torch.equal(v, buffers[k]) for k, v in net.named_buffers() if k != "threshold")
    with torch.no_grad():
        margins = net.eval().margin(clean)
    assert flagged == pytest.approx(float((margins > net.threshold).float().mean())) and flagged <= 0.05
    if (margins > 0).float().mean() <= 0.05:  # the argmax already flags few enough
        assert float(net.threshold) == 0.0
    else:
        assert (margins > float(net.threshold) - 1e-3).float().mean() >= 0.04


def test_the_card_records_what_the_gate_achieves_on_held_out_images(evasive, tmp_path):
    gate = evasive.card.training["gate"]
    assert gate["threshold"] == pytest.approx(float(evasive.net.threshold))
    assert gate["held_out"] > 0 and gate["flags_clean"] <= 0.02  # the threshold was set on these images
    assert gate["flags_fgsm"] > gate["flags_clean"] and gate["flags_noise"] > gate["flags_clean"]
    assert load_model(save_model(evasive, tmp_path / "evasive")).card.training == evasive.card.training


def test_a_gate_that_lets_perturbed_queries_through_says_so(source, splits, caplog):
    # perturbations far below the detector's resolution: it cannot tell them from clean images
    weak = dict(SMALL, eps=1e-4, sigma=1e-4, detector_epochs=1)
    with caplog.at_level("WARNING", logger="modelprint"):
        model = create_attack("evade", **weak).apply(source, splits.attacker, seed=3)
    gate = model.card.training["gate"]
    assert gate["flags_fgsm"] < 0.5
    assert f"flags only {gate['flags_fgsm']:.2f} of its held-out FGSM examples" in caplog.text


def source_normalised(source, x):
    return (x - source.mean) / source.std


def test_the_evasive_file_records_its_lineage_and_loads_to_the_same_function(evasive, source, probes, tmp_path):
    clean, perturbed = probes
    assert evasive.card.arch == "evasive" and evasive.card.lineage[-1]["recipe"]["attack"] == "evade"
    assert evasive.card.mean == (0.0,) and evasive.card.classes == source.card.classes
    loaded = load_model(save_model(evasive, tmp_path / "evasive"))
    assert torch.equal(loaded.predict(perturbed), evasive.predict(perturbed))
    for fmt in ("onnx", "torchscript"):
        graph = open_suspect(export_model(evasive, tmp_path / f"evasive.{'onnx' if fmt == 'onnx' else 'pt'}", fmt))
        assert torch.equal(graph.predict(perturbed).labels, evasive.predict(perturbed)), fmt


def test_an_evasive_model_answers_over_http_as_it_does_in_process(evasive, probes):
    _, perturbed = probes
    with serve_background(create_app(evasive)) as url:
        answers = HttpSuspect(url, max_queries=200).predict(perturbed[:40])
    assert torch.equal(answers.labels, evasive.predict(perturbed[:40]))


def test_evade_refuses_what_it_cannot_build(source, evasive, splits):
    with pytest.raises(ParameterError, match="decoy cannot itself be evasive"):
        create_attack("evade", decoy_arch="evasive")
    with pytest.raises(ParameterError, match="decoy_epochs"):
        create_attack("evade", decoy_epochs=0)
    with pytest.raises(ParameterError, match="already evasive"):
        create_attack("evade", **SMALL).apply(evasive, splits.attacker)
    with pytest.raises(ParameterError, match="needs data"):
        create_attack("evade").apply(source)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a["model"].update(arch="evasive"), "cannot itself be evasive"),
        (lambda a: a["decoy"].pop("std"), "exactly arch, arch_args, mean, std"),
        (lambda a: a["decoy"].update(std=[0.0]), "std must be positive"),
        (lambda a: a["model"].update(mean=[1.0, 2.0]), "must list 1 numbers"),
        (lambda a: a["model"].update(arch="os:system"), "os:system"),
    ],
)
def test_a_hostile_evasive_card_is_one_error_and_imports_nothing(evasive, tmp_path, change, message):
    path = save_model(evasive, tmp_path / "suspect")
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    change(card["arch_args"])
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match=message):
        load_model(path)
