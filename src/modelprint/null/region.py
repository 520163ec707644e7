"""The likelihood region of a Beta's (mean, rho) that count and probability nulls take their
conservative p-values over: the grid, the parameters, the region's frontier and its check."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

from .base import number_in

CONFIDENCE = 0.95
# The (mean, dispersion) grid over which the likelihood region is found.
MEAN_GRID = special.expit(np.linspace(-9.0, 9.0, 361))
RHO_GRID = np.r_[0.0, np.logspace(-4, np.log10(0.98), 120)]
# A Beta's rho is below 1 (rho = 1 is no Beta at all): the largest a stored null may carry.
RHO_MAX = float(np.nextafter(1.0, 0.0))


def beta_parameters(mean: np.ndarray, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Beta(a, b) from mean mu = a / (a + b) and intra-model correlation rho = 1 / (a + b + 1)."""
    total = 1.0 / np.maximum(rho, 1e-12) - 1.0
    return mean * total, (1.0 - mean) * total


def region_frontier(inside: np.ndarray) -> list[list[float]]:
    """The upper frontier of a region of the (mean, rho) grid. Upper tails grow with the mean and
    (above the mean) with the dispersion: keep, per rho, the largest mean inside the region; per
    mean, the largest rho. Their union is the frontier."""
    points = set()
    for j in range(len(RHO_GRID)):
        rows = np.flatnonzero(inside[:, j])
        if rows.size:
            points.add((int(rows[-1]), j))
    for i in range(len(MEAN_GRID)):
        cols = np.flatnonzero(inside[i])
        if cols.size:
            points.add((i, int(cols[-1])))
    return [[float(MEAN_GRID[i]), float(RHO_GRID[j])] for i, j in sorted(points)]


def region_problem(data: dict[str, Any]) -> str | None:
    """A likelihood region as a fit stores it: [mean, rho] pairs on the grid's range."""
    region = data.get("region")
    if not isinstance(region, list) or not region or len(region) > MEAN_GRID.size * RHO_GRID.size:
        return "its null's region is not a list of [mean, rho] points"
    for point in region:
        if not (
            isinstance(point, list) and len(point) == 2 and number_in(point[0], 0, 1) and number_in(point[1], 0, 1)
        ):
            return f"its null's region holds {str(point)[:40]}, not a [mean, rho] point in [0, 1]"
        if not 0 < point[0] < 1 or point[1] >= 1:
            return f"its null's region holds {str(point)[:40]}, outside the fitted range"
    if not number_in(data.get("confidence"), 0.5, 0.999999):
        return "its null's confidence is not a level in (0.5, 1)"
    return None
