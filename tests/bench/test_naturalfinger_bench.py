"""NaturalFinger through bench: a training zoo beside the smoke zoo, the ablation and stealth."""

import json

import pytest

from modelprint.bench import run_bench
from modelprint.bench.report import write_report
from modelprint.errors import ParameterError
from modelprint.fingerprints import ablation_variants
from modelprint.fingerprints.naturalfinger.gan import GANConfig, save_gan, train_gan
from modelprint.stealth import StealthConfig
from modelprint.zoo import ZooManifest, source_row
from modelprint.zoo.build import build_zoo

# The smoke zoo's source recipe (same bytes), and positives/negatives with seeds it never uses.
SMOKE_TRAIN = """
name = "smoke-train"
data = "digits"
split_seed = 0
[train]
epochs = 3
[[models]]
name = "source"
role = "positive"
category = "source"
arch = "cnn"
args = { width = 8 }
split = "owner"
seed = 0
[[models]]
from = ["source"]
category = "extracted"
variants = [{ w = 8, s = 902 }, { w = 4, s = 903 }]
steps = [{ attack = "distill", arch = "cnn", arch_args = { width = "$w" }, epochs = 2, seed = "$s" }]
[[models]]
name = "independent"
role = "negative"
category = "independent"
arch = "cnn"
args = { width = 8 }
split = "attacker"
variants = [{ seed = 101 }, { seed = 102 }]
"""


@pytest.fixture(scope="module")
def nf_inputs(tmp_path_factory, splits):
    root = tmp_path_factory.mktemp("nf-bench")
    (root / "train.toml").write_text(SMOKE_TRAIN)
    build_zoo(root / "train.toml", root / "train", workers=0, progress=False)
    gan = train_gan(splits.owner, GANConfig(width=16, z_dim=8, steps=100), seed=0, progress=False)
    return {"gan": str(save_gan(gan, root / "gan.safetensors", grid=False)), "trained": str(root / "train")}


def test_bench_with_ablation_and_stealth(reference_zoo, nf_inputs, tmp_path):
    variants = {k: v for k, v in ablation_variants("naturalfinger").items() if k != "naturalfinger"}
    methods = ["c", "naturalfinger", *variants]
    params = {"c": {"steps": 20}, "naturalfinger": {**nf_inputs, "iterations": 5, "screen_draws": 1, "fill": True}}
    detectors = StealthConfig(epochs=3, seeds=(0, 1))  # small detectors: the report's plumbing is tested here
    run_bench(reference_zoo, methods, tmp_path, n=10, budgets=(5,), method_params=params, variants=variants,
              stealth=detectors, progress=False)  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["methods"]) == methods
    ablated = {m: r["fingerprint"]["ablation"]["label"] for m, r in results["methods"].items() if m != "c"}
    assert ablated["naturalfinger"] == "AL+IT+DL" and ablated["naturalfinger[none]"] == "none"
    assert results["methods"]["naturalfinger[AL]"]["fingerprint"]["params"]["input_transform"] is False
    assert results["methods"]["naturalfinger"]["fingerprint"]["ablation"]["paper_aruc"] == 0.91
    for r in results["methods"].values():
        assert 0 <= r["detection_rate"]["mean"] <= 1 and len(r["detection_rate"]["per_seed"]) == 2
        assert 0 <= r["metrics"]["aruc"] <= 1
    assert results["stealth"]["settings"]["epochs"] == 3
    md, _ = write_report(tmp_path)
    text = md.read_text()
    assert "## Ablation" in text and "## Stealthiness" in text and "| naturalfinger[IT+DL] | – | ✓ | ✓ |" in text
    assert (tmp_path / "plots" / "detection.png").is_file()


def test_bench_refuses_a_training_zoo_that_is_the_evaluation_zoo(reference_zoo, nf_inputs, tmp_path):
    params = {"naturalfinger": {"gan": nf_inputs["gan"], "trained": str(reference_zoo), "iterations": 2, "fill": True}}
    with pytest.raises(ParameterError, match="learnt from 9 model"):
        run_bench(reference_zoo, ["naturalfinger"], tmp_path, n=5, method_params=params, progress=False)


def test_training_zoo_shares_only_the_source(reference_zoo, nf_inputs):
    ev, tr = ZooManifest.read(reference_zoo), ZooManifest.read(nf_inputs["trained"])
    assert source_row(ev)["sha256"] == source_row(tr)["sha256"]
    assert not {r["sha256"] for r in ev.rows} & {r["sha256"] for r in tr.rows} - {source_row(ev)["sha256"]}
