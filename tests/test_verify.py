import pytest

from modelprint.attacks import create_attack
from modelprint.errors import FingerprintFileError
from modelprint.fingerprints import create_method
from modelprint.models import create_model
from modelprint.verify import verify


@pytest.fixture(scope="module")
def ltrc_fp(source):
    return create_method("ltrc", steps=200).generate(source, n=50, seed=0, progress=False)


def test_verify_separates_a_pruned_copy_from_an_independent_model(source, independent, ltrc_fp):
    pruned = create_attack("prune", rate=0.3).apply(source)
    pos, neg = verify(ltrc_fp, pruned), verify(ltrc_fp, independent)
    assert pos.matching_rate >= 0.9 and pos.verdict == "match"
    assert neg.matching_rate <= pos.matching_rate - 0.3
    assert pos.p_value < 1e-20 and pos.n == pos.queries == 50
    assert verify(ltrc_fp, independent, threshold=0.9).verdict == "no-match"


def test_stored_threshold_is_the_default(source, ltrc_fp):
    fp = type(ltrc_fp)(ltrc_fp.x, ltrc_fp.y, {**ltrc_fp.meta, "threshold": 1.01})
    assert verify(fp, source).threshold == 1.01 and verify(fp, source).verdict == "no-match"


def test_wrong_input_shape_is_a_clear_error(ltrc_fp):
    other = create_model("cnn", num_classes=10, input_shape=(3, 32, 32), width=4)
    with pytest.raises(FingerprintFileError, match="input shape"):
        verify(ltrc_fp, other)
