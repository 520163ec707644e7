"""Characteristic examples: C, RC, RC+GM, LTRC and LTRC+GM.

Paper: "Characteristic Examples: High-Robustness, Low-Transferability Fingerprinting
of Neural Networks" (IJCAI 2021).

From uniform random inputs and random target labels l, iterate (Eq. 2-3)::

    x_{t+1} = HighPass_k( Clip_[0,1]( x_t - alpha * sign(grad_x Loss_{theta+Delta}(x_t, l)) ) )

for ``steps`` iterations or until the loss falls under ``eta``. Delta ~ U[-delta, delta]
per weight, fresh every step (RC); with ``q > 1`` the input gradient is the mean over q
noisy copies (GM); ``k > 0`` removes the DCT frequencies 1 <= i + j <= k (LTRC). The
expected labels are the clean source model's predictions on the final inputs.

Parameters (paper symbols):
    steps (int): iterations, 500.
    alpha (float): step size alpha in [0, 1] pixel units, 0.01 (the paper gives none).
    eta (float): per-example stopping loss eta, 1e-6.
    delta (float): weight-noise bound delta; paper 0.01-0.07 at 32 px, 0.001-0.007 at 224 px.
    q (int): noisy copies averaged per step (GM), 10 for the +GM variants, else 1.
    k (int | None): DCT high-pass band; 0 = off, None = scaled from 20 at 224 px.
    gm (str): "loop", "vmap" or "auto" (loop on CPU, where it was measured faster).
    channels_last (str | bool): memory format for conv nets; "auto" = on CPU.
    final_clip (bool): clip the stored queries to [0, 1] after the last high-pass, so
        they are valid images for any API; expected labels are taken after it.

Shapes: queries (n, C, H, W) in [0, 1]; expected labels (n,) int64.

Example::

    fp = create_method("ltrc", delta=0.01).generate(load_model("owner.safetensors"), n=100, seed=0)
    fp.save("owner.fp.safetensors")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from ..data import Dataset
from ..errors import ParameterError
from ..models import ModelprintModel
from ..progress import progress_bar
from ..transforms import dct_highpass, default_k
from .base import FingerprintMethod, register_method
from .memory import query_batch

# The methods the Characteristic Examples paper compares (what evaluate and bench run unless
# told), its baseline and the one it proposes: the rest of the package names them by role.
PAPER_METHODS = ("c", "rc", "rcgm", "ltrc")
BASELINE_METHOD, PROPOSED_METHOD = "c", "ltrc"


class NoisyGradient:
    """Input gradients of the per-example CE loss, averaged over q copies of the model with
    uniform weight noise in [-delta, delta] (fresh every call). With delta = 0 and q = 1 it
    is the plain input gradient.

    ``mode="loop"`` perturbs the model's own parameters in place, copy after copy;
    ``mode="vmap"`` stacks the q noisy parameter sets and vectorises one functional call
    over them. Both draw the noise in the same order from ``generator``, so for the same
    generator state they compute the same gradient (up to float rounding).
    """

    def __init__(self, model: nn.Module, *, delta: float, q: int, mode: str, generator: torch.Generator) -> None:
        self.model, self.delta, self.q, self.mode, self.g = model, delta, q, mode, generator
        self.names = [n for n, _ in model.named_parameters()]
        self.params = [p for _, p in model.named_parameters()]
        self.base = [p.detach().clone() for p in self.params] if delta > 0 else []
        self.buffers = dict(model.named_buffers())

    def restore(self) -> None:
        with torch.no_grad():
            for p, p0 in zip(self.params, self.base):
                p.copy_(p0)

    def _perturb_in_place(self) -> None:
        with torch.no_grad():
            for p, p0 in zip(self.params, self.base):
                p.uniform_(-self.delta, self.delta, generator=self.g).add_(p0)

    def _stacked_noisy_params(self) -> dict[str, torch.Tensor]:
        stacked = [torch.empty((self.q, *p0.shape), dtype=p0.dtype, device=p0.device) for p0 in self.base]
        for j in range(self.q):  # same draw order as the loop: copy-major, parameter-minor
            for s, p0 in zip(stacked, self.base):
                s[j].uniform_(-self.delta, self.delta, generator=self.g).add_(p0)
        return dict(zip(self.names, stacked))

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mean input gradient, mean per-example loss), both detached."""
        x = x.detach().requires_grad_(True)
        if self.delta > 0 and self.q > 1 and self.mode == "vmap":

            def per_copy_loss(params: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
                logits = functional_call(self.model, {**params, **self.buffers}, (inputs,))
                return F.cross_entropy(logits, target, reduction="none")

            losses = vmap(per_copy_loss, in_dims=(0, None))(self._stacked_noisy_params(), x).mean(0)
            (grad,) = torch.autograd.grad(losses.sum(), x)
            return grad, losses.detach()
        grad_sum = torch.zeros_like(x)
        loss_sum = torch.zeros(len(x), device=x.device)
        for _ in range(self.q):
            if self.delta > 0:
                self._perturb_in_place()
            loss = F.cross_entropy(self.model(x), target, reduction="none")
            # Sum of per-example losses: each example's gradient is its own loss's gradient.
            (grad,) = torch.autograd.grad(loss.sum(), x)
            grad_sum += grad
            loss_sum += loss.detach()
        return grad_sum / self.q, loss_sum / self.q


def _has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


@dataclass(kw_only=True)
class CharacteristicExamples(FingerprintMethod):
    paper: ClassVar[str] = (
        '"Characteristic Examples: High-Robustness, Low-Transferability Fingerprinting of Neural Networks", IJCAI 2021'
    )

    steps: int = 500
    alpha: float = 0.01
    eta: float = 1e-6
    delta: float = 0.0
    q: int = 1
    k: int | None = 0
    gm: str = "auto"
    channels_last: str | bool = "auto"
    final_clip: bool = True

    def __post_init__(self) -> None:
        if self.steps < 0 or self.q < 1:
            raise ParameterError("steps must be >= 0 and q >= 1")
        if not 0 < self.alpha <= 1:
            raise ParameterError(f"alpha must be in (0, 1], got {self.alpha}")
        if self.delta < 0 or self.eta < 0:
            raise ParameterError("delta and eta must be >= 0")
        if self.k is not None and self.k < 0:
            raise ParameterError(f"k must be >= 0 (or None for the resolution default), got {self.k}")
        if self.gm not in ("auto", "loop", "vmap"):
            raise ParameterError(f"gm must be auto, loop or vmap, got {self.gm!r}")
        if self.channels_last not in ("auto", True, False):
            raise ParameterError(f"channels_last must be auto, true or false, got {self.channels_last!r}")

    def tuning_grid(self, input_shape: tuple[int, ...]) -> dict[str, list[Any]]:
        """The high-pass band k first (LTRC), as fractions of the image side, since the right band
        depends on how much of the data's energy sits in low frequencies (README: k = 1 at 16 px
        barely helps on digits); then the weight noise delta (RC family); then the step count."""
        size = min(input_shape[1:])
        grid: dict[str, list[Any]] = {}
        if self.k != 0:
            grid["k"] = sorted({default_k(size), *(max(1, round(size * f)) for f in (0.125, 0.25, 0.375, 0.5))})
        if self.delta > 0:
            grid["delta"] = [self.delta, *(d for d in (0.003, 0.03) if d != self.delta)]
        grid["steps"] = [self.steps, *(s for s in (200, 1000) if s != self.steps)]
        return grid

    def resolved_k(self, size: int) -> int:
        return default_k(size) if self.k is None else self.k

    def _generate(
        self, model: ModelprintModel, data: Dataset | None, *, n: int, seed: int, device: str, progress: bool
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        c, h, w = model.card.input_shape
        k = self.resolved_k(min(h, w))
        g = torch.Generator(device="cpu").manual_seed(seed)
        x = torch.rand((n, c, h, w), generator=g).to(device)
        target = torch.randint(0, model.card.num_classes, (n,), generator=g).to(device)
        on_cpu = device == "cpu"
        mode = ("loop" if on_cpu else "vmap") if self.gm == "auto" else self.gm
        use_cl = (on_cpu and _has_conv(model)) if self.channels_last == "auto" else bool(self.channels_last)
        memory_format = torch.channels_last if use_cl else torch.contiguous_format
        model = model.to(memory_format=memory_format)
        x = x.contiguous(memory_format=memory_format)
        requires = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():  # input gradients only: no weight-gradient work
            p.requires_grad_(False)
        try:
            steps_taken, forward_backward, batch = self._search_in_batches(
                model, x, target, k, mode=mode, memory_format=memory_format, seed=seed, progress=progress
            )
        finally:
            for p, r in zip(model.parameters(), requires):
                p.requires_grad_(r)
            model.to(memory_format=torch.contiguous_format)
        x = x.contiguous()
        if self.final_clip:
            x = x.clamp(0, 1)
        expected = model.predict(x)
        target = target.cpu()
        info = {
            **({"generation_batch": batch} if batch < n else {}),
            "k": k,
            "gm_mode": mode if self.q > 1 and self.delta > 0 else None,
            "channels_last": use_cl,
            "target_hit_rate": round((expected == target).float().mean().item(), 4),
            "mean_steps": round(steps_taken.float().mean().item(), 2),
            "forward_backward_examples": forward_backward,
        }
        return x, expected, {"target": target, "steps": steps_taken}, info

    def _search_in_batches(
        self,
        model: ModelprintModel,
        x: torch.Tensor,
        target: torch.Tensor,
        k: int,
        *,
        mode: str,
        memory_format: torch.memory_format,
        seed: int,
        progress: bool,
    ) -> tuple[torch.Tensor, int, int]:
        """:meth:`_search` over batches of the queries that fit in memory (:func:`query_batch`),
        each seeing the weight noise the whole would have; returns (steps, work, batch size)."""
        n = len(x)
        copies = self.q if mode == "vmap" and self.q > 1 and self.delta > 0 else 1
        batch = query_batch(model, n, device=str(x.device), copies=copies, memory_format=memory_format)
        steps_taken, forward_backward = torch.zeros(n, dtype=torch.long), 0
        for start in range(0, n, batch):
            noise = torch.Generator(device=x.device).manual_seed(seed + 1)
            gradient = NoisyGradient(model, delta=self.delta, q=self.q, mode=mode, generator=noise)
            chunk = slice(start, start + batch)
            title = f"{self.name} examples" + (f" {start + 1}-{min(start + batch, n)}/{n}" if batch < n else "")
            try:
                steps_taken[chunk], work = self._search(gradient, x[chunk], target[chunk], k, title, progress)
            finally:
                gradient.restore()
            forward_backward += work
        return steps_taken, forward_backward, batch

    def _search(
        self, gradient: NoisyGradient, x: torch.Tensor, target: torch.Tensor, k: int, title: str, progress: bool
    ) -> tuple[torch.Tensor, int]:
        """Move the queries ``x`` (changed in place) towards ``target`` until each one's loss is
        under eta or the steps run out; returns each query's steps and the forward-backward work."""
        active = torch.arange(len(x), device=x.device)
        steps_taken = torch.zeros(len(x), dtype=torch.long)
        forward_backward = 0
        with progress_bar(self.steps, title, progress) as bar:
            for _ in range(self.steps):
                if len(active) == 0:
                    break
                xa = x[active]
                grad, loss = gradient(xa, target[active])
                forward_backward += self.q * len(active)
                going = loss >= self.eta  # examples under eta stop here, unchanged
                idx = active[going]
                with torch.no_grad():
                    step = (xa[going] - self.alpha * grad[going].sign()).clamp_(0, 1)
                    x[idx] = dct_highpass(step, k) if k else step
                steps_taken[idx.cpu()] += 1
                active = idx
                bar.update(1, description=f"{title} ({len(active)} active)")
        return steps_taken, forward_backward


@register_method("c")
@dataclass(kw_only=True)
class C(CharacteristicExamples):
    """Vanilla C-examples: no weight noise, no high-pass.

    Arguments: those of :class:`CharacteristicExamples` (steps, alpha, eta, final_clip, ...).

    Example::

        fp = create_method("c", steps=500).generate(source, owner_data, n=100, seed=0)
    """


@register_method("rc")
@dataclass(kw_only=True)
class RC(CharacteristicExamples):
    """Robust C-examples: a fresh uniformly noised model each step.

    Arguments: delta (float): weight noise bound, 0.01; and those of :class:`CharacteristicExamples`.

    Example::

        fp = create_method("rc", delta=0.01).generate(source, owner_data, n=100, seed=0)
    """

    delta: float = 0.01


@register_method("rcgm")
@dataclass(kw_only=True)
class RCGM(CharacteristicExamples):
    """RC-examples with the gradient mean over q noisy copies.

    Arguments: delta (float): 0.01. q (int): noisy copies per step, 10.

    Example::

        fp = create_method("rcgm", q=10).generate(source, owner_data, n=100, seed=0)
    """

    delta: float = 0.01
    q: int = 10


@register_method("ltrc")
@dataclass(kw_only=True)
class LTRC(CharacteristicExamples):
    """Low-transferability RC-examples: RC plus a DCT high-pass after every step.

    Arguments: delta (float): 0.01. k (int | None): high-pass band, None = scaled from the paper's 20 at 224 px.

    Example::

        fp = create_method("ltrc", k=2).generate(source, owner_data, n=100, seed=0)
    """

    delta: float = 0.01
    k: int | None = None


@register_method("ltrcgm")
@dataclass(kw_only=True)
class LTRCGM(CharacteristicExamples):
    """LTRC-examples with the gradient mean over q noisy copies.

    Arguments: delta (float): 0.01. q (int): 10. k (int | None): high-pass band.

    Example::

        fp = create_method("ltrcgm", q=10, k=2).generate(source, owner_data, n=100, seed=0)
    """

    delta: float = 0.01
    q: int = 10
    k: int | None = None
