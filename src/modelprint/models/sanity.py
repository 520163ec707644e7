"""Is this the model the user meant? A network that answers the owner's own data at about chance
was almost always handed its inputs wrong, and any verdict on it would be silently wrong.

Example::

    problem = chance_problem(accuracy(model, data.test), model.card.num_classes)
    if problem: raise ParameterError(problem)
"""

from __future__ import annotations

# At or below this many times chance (1 / classes), the accuracy says "not this model's inputs":
# 0.2 for 10 classes. A trained model of any use is far above it; a wrong normalisation,
# class order or input layout leaves it at about chance (0.11 seen on a net normalised
# with mean 0.3, std 0.35 and imported without them).
CHANCE_FACTOR = 2.0


def chance_problem(accuracy: float, num_classes: int) -> str | None:
    """Why ``accuracy`` on the owner's data says the model is fed wrongly, or None when it does not."""
    if not num_classes or num_classes < 2 or accuracy != accuracy:  # unknown classes, or no data (NaN)
        return None
    chance = 1.0 / num_classes
    if accuracy > CHANCE_FACTOR * chance:
        return None
    return (
        f"the model answers the owner's data with accuracy {accuracy:.3f}, about chance ({chance:.2f} for "
        f"{num_classes} classes): it is not seeing its inputs as it was trained to. Check the "
        "preprocessing (mean / std the network was trained with), the class order and the input "
        "shape (C, H, W)"
    )
