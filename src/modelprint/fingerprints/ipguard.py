"""IPGuard (Cao, Jia and Gong, AsiaCCS 2021): data points near the source's classification
boundary, their labels the evidence.

Each query starts from an owner image x0 and two classes i != j drawn with the seed; the
point is moved (Adam on the input, kept in [0, 1]) to minimise::

    L(x) = ReLU(g_i(x) - g_j(x) + k) + ReLU(max_{t != i, j} g_t(x) - g_i(x))

with g the source's logits. At L = 0, j is the top class, k logits above i, and i is above
every other class: a point at logit distance k from the i / j boundary. An independent model
has its own boundary there, so it disagrees more often than on natural images; a modified
copy keeps the boundary and the label. The expected label is the source's prediction after
optimisation.

Parameters:
    k (float): the margin between the top two logits, 0.5. The paper varies k to trade
        robustness (larger) against uniqueness (smaller); its default is not in our sources,
        so we take a small margin ("make the top two logits nearly equal").
    steps (int): at most 500 steps (as C's); alpha (float): step size per pixel, 0.01.
    A query stops moving once L = 0.

Example::

    fp = create_method("ipguard").generate(source, owner_data, n=100, seed=0)
    create_method("ipguard").evidence(fp, suspect).values.mean()  # matching rate
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..data import Dataset
from ..errors import ParameterError
from ..models import ModelprintModel
from ..progress import progress_bar
from .base import FingerprintMethod, owner_images, register_method
from .memory import query_batch


def boundary_loss(logits: torch.Tensor, i: torch.Tensor, j: torch.Tensor, k: float) -> torch.Tensor:
    """Per example ``ReLU(g_i - g_j + k) + ReLU(max_{t != i, j} g_t - g_i)`` for logits (N, C)."""
    gi, gj = logits.gather(1, i[:, None])[:, 0], logits.gather(1, j[:, None])[:, 0]
    others = logits.scatter(1, i[:, None], float("-inf")).scatter(1, j[:, None], float("-inf"))
    return F.relu(gi - gj + k) + F.relu(others.max(1).values - gi)


@register_method("ipguard")
@dataclass(kw_only=True)
class IPGuard(FingerprintMethod):
    """IPGuard (Cao, Jia and Gong, AsiaCCS 2021): owner images moved to logit distance ``k``
    from the source's boundary between two seeded classes; the evidence is label agreement.

    Arguments:
        k (float): margin between the top two logits, 0.5. steps (int): at most 500 Adam steps.
        alpha (float): step size per pixel, 0.01.

    Shape: queries (n, C, H, W) in [0, 1], labels (n,).

    Example::

        fp = create_method("ipguard", k=0.5).generate(source, owner_data, n=100, seed=0)
        verify(fp, suspect).matching_rate
    """

    paper: ClassVar[str] = (
        'Cao, Jia and Gong, "IPGuard: Protecting Intellectual Property of Deep Neural Networks via '
        'Fingerprinting the Classification Boundary", AsiaCCS 2021'
    )

    k: float = 0.5
    steps: int = 500
    alpha: float = 0.01

    def __post_init__(self) -> None:
        if self.k < 0 or self.steps < 1 or self.alpha <= 0:
            raise ParameterError(f"need k >= 0, steps >= 1 and alpha > 0, got {self.k}, {self.steps}, {self.alpha}")

    def _generate(
        self, model: ModelprintModel, data: Dataset | None, *, n: int, seed: int, device: str, progress: bool
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        classes = model.card.num_classes
        if classes < 3:
            raise ParameterError("IPGuard needs at least 3 classes (a third class must stay below the top two)")
        g = torch.Generator().manual_seed(seed)
        x = owner_images(model, data, n, seed).clone().to(device)
        i = torch.randint(0, classes, (n,), generator=g)
        j = (i + torch.randint(1, classes, (n,), generator=g)) % classes  # j != i
        i, j = i.to(device), j.to(device)
        model.requires_grad_(False)  # input gradients only (generate gives the flags back)
        batch = query_batch(model, n, device=device)  # the queries that fit in memory at once
        for start in range(0, n, batch):
            chunk = slice(start, start + batch)
            title = "ipguard points" + (f" {start + 1}-{min(start + batch, n)}/{n}" if batch < n else "")
            x[chunk] = self._search(model, x[chunk], i[chunk], j[chunk], title, progress)
        with torch.no_grad():
            final = boundary_loss(torch.cat([model(x[s : s + batch]) for s in range(0, n, batch)]), i, j, self.k)
        expected = model.predict(x)
        info = {
            **({"generation_batch": batch} if batch < n else {}),
            "target_hit_rate": round((expected == j).float().mean().item(), 4),
            "objective_met": round((final <= 1e-6).float().mean().item(), 4),
        }
        return x.cpu(), expected.cpu(), {"i": i.cpu(), "j": j.cpu()}, info

    def _search(
        self, model: ModelprintModel, x: torch.Tensor, i: torch.Tensor, j: torch.Tensor, title: str, progress: bool
    ) -> torch.Tensor:
        """The points ``x`` moved towards the source's boundary between ``i`` and ``j``."""
        with progress_bar(self.steps, title, progress) as bar:
            for _ in range(self.steps):
                x = x.detach().requires_grad_(True)
                loss = boundary_loss(model(x), i, j, self.k)
                (grad,) = torch.autograd.grad(loss.sum(), x)
                x = x.detach()
                active = loss.detach() > 0  # a point that meets the objective stays where it is
                if not active.any():
                    break
                x[active] = (x[active] - self.alpha * grad[active].sign()).clamp_(0, 1)
                bar.update(1)
        return x.detach()
