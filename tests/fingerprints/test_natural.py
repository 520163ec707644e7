"""Natural queries: held-out images of the owner's data set, labelled by the source."""

import pytest
import torch

from modelprint.errors import ParameterError
from modelprint.fingerprints import create_method
from modelprint.screening import screened_calibration


def test_candidates_are_held_out_images_with_the_sources_labels(source, splits):
    fp = create_method("natural").generate(source, splits.owner, n=50, seed=0, progress=False)
    held_out = torch.cat([splits.test.x, splits.tune.x]).flatten(1)
    owner = splits.owner.x.flatten(1)
    for image in fp.x.flatten(1):  # every query is a held-out image as it is, none the owner trained on
        assert (held_out == image).all(1).any() and not (owner == image).all(1).any()
    assert torch.equal(fp.y, source.predict(fp.x)) and fp.meta["held_out_pool"] == len(held_out)
    assert "unscreened" in create_method("natural").summary(fp)
    with pytest.raises(ParameterError, match="held-out images, fewer than"):
        create_method("natural").generate(source, n=len(held_out) + 1, seed=0, progress=False)


def test_screened_natural_queries_keep_the_rare_answers(source, negatives):
    candidates = create_method("natural").generate(source, n=200, seed=0, progress=False)
    fp = screened_calibration(candidates, negatives, keep=20)
    record = fp.meta["screening"]
    assert len(fp) == 20 and record["kept_agreement"] < record["candidate_agreement"]
    assert "natural images of 200" in create_method("natural").summary(fp)
