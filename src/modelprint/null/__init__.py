"""The null distribution of a fingerprint statistic over independent models, as pure functions.

One family per kind of evidence a fingerprint method produces, each in its own module:

* **Counts** (per-query 0/1 agreement, e.g. label matching): a model independent of the
  source agrees with query i with some probability theta that is *its own*: given the
  model, the N queries (drawn independently by the generator) are Bernoulli(theta), and
  theta varies from model to model, theta ~ Beta(a, b). The count K of agreements is then
  beta-binomial. A plain binomial (one theta for every model, let alone theta = 1/classes)
  is wrong: independent models agree with characteristic examples at 0.2-0.7 depending on
  the model, so the binomial's tail is far too thin and calls independent models matches.
* **Scores** (a similarity, a cosine): a normal model for the statistic, used through the
  Student-t prediction interval for one new model, which is exact under normality with
  unknown mean and variance and so accounts for few models.
* **Probabilities** (a verifier's score in [0, 1], which independent models push towards 0
  or 1, far from a bell): a Beta distribution, U-shaped where the scores are, with the same
  conservative likelihood region as counts.
* **Keys** (per-component similarities of a white-box mark): how often a component of an
  independent owner's key clears the similarity threshold, estimated on thousands of
  simulated keys, and the exact binomial tail of the count over the key's components.

Every null states the smallest p-value it can give (``smallest_p``), and the verdict rule
is the same for all: ``match`` when p < FPR; ``no-match`` only when the suspect is typical
of independent models (see :meth:`Null.typical`); ``inconclusive`` otherwise.

Few reference models pin (a, b) down poorly, so count p-values are conservative: the
largest tail probability over the likelihood-ratio confidence region of (a, b) (level
``confidence``, chi-square with 2 degrees of freedom), not the tail at the estimate.
"""

from .base import NO_MATCH_P, Null, NullEvidence, Verdict

# One module per family, its maths beside its class; importing each registers it (Null's registry).
from .beta import SCORE_EPS, BetaNull, fit_probability_null, probability_p_value, probability_p_values
from .beta_binomial import (
    BetaBinomialNull,
    ChanceNull,
    chance_null,
    count_p_value,
    critical_rate,
    fit_count_null,
    needed_count,
    references_needed,
    tail_table,
)
from .key_tail import KeyNull, fit_key_null, key_p_value
from .normal import SCORE_MAX, SD_FLOOR, NormalNull, fit_score_null, score_p_value
from .region import CONFIDENCE
from .sequential import (
    clopper_pearson,
    mixture_log_evidence,
    positive_prior,
    queries_to_match,
    sequence_log_evidence,
    upper_bound,
)
from .uncalibrated import NoNull

__all__ = [
    "CONFIDENCE",
    "NO_MATCH_P",
    "SCORE_EPS",
    "SCORE_MAX",
    "SD_FLOOR",
    "BetaBinomialNull",
    "NullEvidence",
    "Verdict",
    "BetaNull",
    "ChanceNull",
    "KeyNull",
    "NoNull",
    "NormalNull",
    "Null",
    "chance_null",
    "clopper_pearson",
    "count_p_value",
    "critical_rate",
    "fit_count_null",
    "fit_key_null",
    "fit_probability_null",
    "fit_score_null",
    "key_p_value",
    "mixture_log_evidence",
    "needed_count",
    "positive_prior",
    "probability_p_value",
    "probability_p_values",
    "queries_to_match",
    "references_needed",
    "score_p_value",
    "sequence_log_evidence",
    "tail_table",
    "upper_bound",
]
