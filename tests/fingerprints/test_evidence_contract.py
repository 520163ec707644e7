"""The evidence contract: a score-based and a weight-based toy family (tests only) run through
calibrate, verify, evaluate and bench with no special case anywhere downstream."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from modelprint.attacks import create_attack
from modelprint.bench import run_bench
from modelprint.calibrate import calibrate
from modelprint.errors import ParameterError
from modelprint.evaluate import evaluate_fingerprint
from modelprint.fingerprints import METHODS, Evidence, Fingerprint, FingerprintMethod
from modelprint.verify import verify


@dataclass(kw_only=True)
class ToyScores(FingerprintMethod):
    """Random inputs; evidence = the suspect's softmax probability of the source's label, per query."""

    temperature: float = 1.0
    evidence_kind = "scores"
    statistic_name = "mean_probability"
    null_family = "scores"
    sequential = False

    def _generate(self, model, data, *, n, seed, device, progress):
        g = torch.Generator().manual_seed(seed)
        x = torch.rand((n, *model.card.input_shape), generator=g)
        return x, model.predict(x), {}, {}

    def _evidence(self, fp, suspect, start, stop):
        # suspect is a modelprint.suspects.Suspect: probabilities, sharpened or flattened by the temperature
        probs = torch.softmax(suspect.predict(fp.x[start:stop]).probs.log() / self.temperature, 1)
        return Evidence(probs[torch.arange(stop - start), fp.y[start:stop]].numpy(), "scores", stop - start)


@dataclass(kw_only=True)
class ToyWeights(FingerprintMethod):
    """White-box: the source's first conv filters; evidence = per-filter |cosine| with the suspect's."""

    evidence_kind = "components"
    statistic_name = "filter_similarity"
    null_family = "scores"
    sequential = False

    @staticmethod
    def _filters(model):
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        return conv.weight.detach().flatten(1)

    def items(self, fp):
        return len(fp.extra["filters"])

    def _generate(self, model, data, *, n, seed, device, progress):
        empty = torch.zeros((0, *model.card.input_shape))
        return empty, torch.zeros(0, dtype=torch.long), {"filters": self._filters(model).cpu()}, {}

    def _evidence(self, fp, suspect, start, stop):
        a, b = fp.extra["filters"], self._filters(suspect).cpu()
        sims = np.zeros(stop - start)  # a filter the suspect does not have has similarity 0
        for i in range(start, min(stop, len(b))):
            if b.shape[1] == a.shape[1]:
                sims[i - start] = abs(torch.nn.functional.cosine_similarity(a[i], b[i], dim=0).item())
        return Evidence(sims, "components", 0)


@pytest.fixture(scope="module", autouse=True)
def toys():
    for name, cls in (("toy-scores", ToyScores), ("toy-weights", ToyWeights)):
        METHODS.register(name)(cls)
    yield
    for name in ("toy-scores", "toy-weights"):
        METHODS._items.pop(name)


@pytest.mark.parametrize("name", ["toy-scores", "toy-weights"])
def test_toy_family_through_calibrate_and_verify(name, source, negatives, tmp_path):
    fp = METHODS.create(name).generate(source, n=20, seed=0, progress=False)
    fp.save(tmp_path / "fp")
    fp = Fingerprint.load(tmp_path / "fp")  # the method comes back from the file's metadata
    uncalibrated = verify(fp, source)
    assert uncalibrated.p_value is None and uncalibrated.verdict == "inconclusive" and uncalibrated.warning
    cal = calibrate(fp, negatives)
    assert cal.meta["null"]["family"] == "normal" and cal.meta["null"]["n_models"] == 6
    copy = create_attack("noise", sigma=0.01).apply(source, seed=0)
    res = verify(cal, copy, fpr=1e-3)
    assert res.verdict == "match" and res.matching_rate is None and res.matches is None
    assert res.queries == (20 if name == "toy-scores" else 0)
    own = [verify(cal, m, fpr=1e-3).verdict for m in negatives]
    assert "match" not in own
    with pytest.raises(ParameterError, match="sequential verification does not apply"):
        verify(cal, copy, max_queries=10)


def test_toys_through_evaluate(source, negatives):
    for name in ("toy-scores", "toy-weights"):
        fp = METHODS.create(name).generate(source, n=20, seed=0, progress=False)
        copies = [create_attack("noise", sigma=0.01).apply(source, seed=s) for s in (0, 1)]
        res = evaluate_fingerprint(fp, source, copies, negatives)
        method = METHODS.create(name)
        own = method.statistic(method.evidence(fp, source).values)
        assert res.auc == 1.0 and res.robustness > res.transferability
        assert res.source_rate == pytest.approx(own) and res.source_rate >= max(res.negative_rates)


def test_toys_through_bench(reference_zoo, tmp_path):
    out = tmp_path / "bench"
    results = run_bench(
        reference_zoo, ["toy-scores", "toy-weights", "c"], out, n=20, method_params={"c": {"steps": 20}}, progress=False
    )
    for name, kind in (("toy-scores", "scores"), ("toy-weights", "components")):
        r = results["methods"][name]
        assert r["evidence"] == kind and 0 <= r["metrics"]["aruc"] <= 1
        assert all(name in s["rates"] for s in results["suspects"])
    assert list(results["methods"]["toy-weights"]["budgets"]) == [
        str(len(results["methods"]["toy-weights"]["budgets"]) and "8")
    ]
    assert set(results["methods"]["toy-scores"]["budgets"]) == {"10", "20"}
    src = next(s for s in results["suspects"] if s["id"] == results["source"])
    assert src["rates"]["toy-weights"] == pytest.approx(1.0) and np.isfinite(src["rates"]["toy-scores"])
    from modelprint.bench.report import write_report

    md, _ = write_report(out)
    assert "toy-weights" in md.read_text()
