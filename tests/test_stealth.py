import pytest
import torch

from modelprint.errors import ParameterError
from modelprint.stealth import StealthConfig, detection_rates, fgsm

FAST = StealthConfig(epochs=8, seeds=(0, 1))


def test_noise_is_detected_and_clean_images_are_not(splits, source):
    g = torch.Generator().manual_seed(5)
    clean = splits.test.x[:100]
    queries = {
        "clean": clean,
        "uniform-noise": torch.rand(100, 1, 8, 8, generator=g),
        "fgsm": fgsm(source, clean, source.predict(clean), 0.03),
    }
    result = detection_rates(queries, splits.attacker, holder=source, test=splits.test, config=FAST, progress=False)
    rates = {m: r["mean"] for m, r in result["methods"].items()}
    # FGSM at 0.03 on 8 px images is flagged about half the time; clean images almost never
    assert rates["uniform-noise"] > 0.9 and rates["fgsm"] > rates["clean"] + 0.3 and rates["clean"] < 0.3, rates
    assert result["false_alarm"]["mean"] < 0.3 and len(result["methods"]["clean"]["per_seed"]) == 2
    # seeded: the first seed's detector again gives the same rates
    first_seed = StealthConfig(epochs=FAST.epochs, seeds=FAST.seeds[:1])
    again = detection_rates(queries, splits.attacker, holder=source, config=first_seed, progress=False)
    assert {m: r["per_seed"] for m, r in again["methods"].items()} == {
        m: r["per_seed"][:1] for m, r in result["methods"].items()
    }


def test_bad_inputs_are_refused(splits, source):
    with pytest.raises(ParameterError, match="queries are"):
        detection_rates({"x": torch.rand(3, 1, 16, 16)}, splits.attacker, holder=source, config=FAST, progress=False)
    with pytest.raises(ParameterError, match="sigma"):
        StealthConfig(sigma=0)
