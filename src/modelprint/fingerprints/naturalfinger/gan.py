"""A small SAGAN (self-attention GAN) whose generator NaturalFinger searches for natural queries.

Zhang, Goodfellow, Metaxas, Odena, "Self-Attention Generative Adversarial Networks"
(ICML 2019), scaled down for 16-32 px and 1 or 3 channels: spectral normalisation in
both networks, one self-attention block in each (at half the image side), the hinge
loss and two time-scale learning rates (G 1e-4, D 4e-4, Adam betas (0, 0.9)).

Class-conditional by default, as SAGAN is: the generator's batch norms take a gain and a
bias per class (conditional batch norm) and the discriminator adds the projection term
<embed(y), h(x)> to its score (Miyato and Koyama, "cGANs with Projection Discriminator",
ICLR 2018). A conditional GAN is asked for every class alike, so it cannot collapse onto
a few classes the way an unconditional one can; ``conditional=False`` gives the
unconditional networks (and GAN files written before conditioning load as such).

Generator: z (z_dim) [, class y] -> linear -> (width, s/4, s/4) -> [up x2, conv3, BN, ReLU] -> attention
at s/2 -> [up x2, conv3, BN, ReLU] -> conv3 -> sigmoid: images (N, C, s, s) in [0, 1], so
its samples live in the input space every modelprint model takes.
Discriminator: conv3 -> conv4/2 -> attention -> conv4/2 -> conv3 -> sum over positions ->
linear: one realness score per image (hinge: real >= 1, fake <= -1).

Training is seeded per step (the batch and the latents of step t come from ``seed`` and t
alone), so a run interrupted and resumed from its checkpoint gives the same bytes as an
uninterrupted one. Files: ``GAN.safetensors`` (``generator.*`` and ``discriminator.*``)
with its card ``GAN.json`` (data set and its sha256, settings, loss history, time), a
sample grid ``GAN.png``, and while training ``GAN.ckpt.safetensors`` (removed at the end).

Example::

    gan = train_gan(load_dataset("digits:16", "owner"), GANConfig(steps=2000), seed=0)
    save_gan(gan, "owner-gan.safetensors")
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..._io import atomic_write, atomic_write_text, check_readable, sha256_file
from ..._lazy import pyplot
from ..._version import __version__
from ...data import Dataset
from ...errors import ModelFileError, ParameterError
from ...parallel import check_device
from ...progress import progress_bar

GAN_KIND = "modelprint-gan"


@dataclass(frozen=True)
class GANConfig:
    """Settings of a GAN and its training (SAGAN's defaults where they fit small images)."""

    z_dim: int = 64
    width: int = 64  # channels at the lowest resolution; halved at each upsampling
    steps: int = 3000
    batch_size: int = 64
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    beta1: float = 0.0
    beta2: float = 0.9
    checkpoint_every: int = 250
    conditional: bool = True

    def __post_init__(self) -> None:
        if self.z_dim < 1 or self.width < 8 or self.steps < 0 or self.batch_size < 2:
            raise ParameterError("GAN: z_dim >= 1, width >= 8, steps >= 0 and batch_size >= 2 are required")
        if self.lr_g <= 0 or self.lr_d <= 0 or self.checkpoint_every < 1:
            raise ParameterError("GAN: learning rates must be > 0 and checkpoint_every >= 1")


class SelfAttention(nn.Module):
    """SAGAN's attention over positions: x + gamma * (softmax(f(x)^T g(x)) applied to h(x)), gamma from 0."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(1, channels // 8)
        self.f = spectral_norm(nn.Conv2d(channels, inner, 1, bias=False))
        self.g = spectral_norm(nn.Conv2d(channels, inner, 1, bias=False))
        self.h = spectral_norm(nn.Conv2d(channels, max(1, channels // 2), 1, bias=False))
        self.out = spectral_norm(nn.Conv2d(max(1, channels // 2), channels, 1, bias=False))
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, hh, ww = x.shape
        q = self.f(x).flatten(2)  # (n, c', hw)
        k = self.g(x).flatten(2)
        v = self.h(x).flatten(2)  # (n, c/2, hw)
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (n, hw, hw): query position -> key positions
        o = (v @ attn.transpose(1, 2)).view(n, -1, hh, ww)
        return x + self.gamma * self.out(o)


class Generator(nn.Module):
    def __init__(self, z_dim: int, channels: int, size: int, width: int) -> None:
        super().__init__()
        self.z_dim, self.s0, self.width = z_dim, size // 4, width
        self.fc = spectral_norm(nn.Linear(z_dim, width * self.s0 * self.s0))
        self.block1 = nn.Sequential(
            nn.Upsample(scale_factor=2),
            spectral_norm(nn.Conv2d(width, width // 2, 3, padding=1)),
            nn.BatchNorm2d(width // 2),
            nn.ReLU(),
        )
        self.attn = SelfAttention(width // 2)
        self.block2 = nn.Sequential(
            nn.Upsample(scale_factor=2),
            spectral_norm(nn.Conv2d(width // 2, width // 4, 3, padding=1)),
            nn.BatchNorm2d(width // 4),
            nn.ReLU(),
        )
        self.to_image = spectral_norm(nn.Conv2d(width // 4, channels, 3, padding=1))
        self.bn0 = nn.BatchNorm2d(width)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn0(self.fc(z).view(len(z), self.width, self.s0, self.s0)))
        h = self.block2(self.attn(self.block1(h)))
        return torch.sigmoid(self.to_image(h))


class Discriminator(nn.Module):
    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        w4, w2 = width // 4, width // 2
        self.features = nn.Sequential(
            spectral_norm(nn.Conv2d(channels, w4, 3, padding=1)),
            nn.LeakyReLU(0.1),
            spectral_norm(nn.Conv2d(w4, w2, 4, stride=2, padding=1)),
            nn.LeakyReLU(0.1),
            SelfAttention(w2),
            spectral_norm(nn.Conv2d(w2, width, 4, stride=2, padding=1)),
            nn.LeakyReLU(0.1),
            spectral_norm(nn.Conv2d(width, width, 3, padding=1)),
            nn.LeakyReLU(0.1),
        )
        self.head = spectral_norm(nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Realness scores (N,) of images in [0, 1]."""
        return self.head(self.features(x * 2 - 1).sum(dim=(2, 3))).squeeze(1)


class ConditionalBatchNorm(nn.Module):
    """Batch norm whose gain and bias are looked up per class (gain starts at 1, bias at 0)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


class ConditionalGenerator(nn.Module):
    """The generator above with every batch norm conditioned on the class y (N,) int64."""

    def __init__(self, z_dim: int, channels: int, size: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.z_dim, self.s0, self.width, self.num_classes = z_dim, size // 4, width, num_classes
        self.fc = spectral_norm(nn.Linear(z_dim, width * self.s0 * self.s0))
        self.bn0 = ConditionalBatchNorm(width, num_classes)
        self.conv1 = spectral_norm(nn.Conv2d(width, width // 2, 3, padding=1))
        self.bn1 = ConditionalBatchNorm(width // 2, num_classes)
        self.attn = SelfAttention(width // 2)
        self.conv2 = spectral_norm(nn.Conv2d(width // 2, width // 4, 3, padding=1))
        self.bn2 = ConditionalBatchNorm(width // 4, num_classes)
        self.to_image = spectral_norm(nn.Conv2d(width // 4, channels, 3, padding=1))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn0(self.fc(z).view(len(z), self.width, self.s0, self.s0), y))
        h = self.attn(F.relu(self.bn1(self.conv1(F.interpolate(h, scale_factor=2)), y)))
        h = F.relu(self.bn2(self.conv2(F.interpolate(h, scale_factor=2)), y))
        return torch.sigmoid(self.to_image(h))


class ProjectionDiscriminator(Discriminator):
    """The discriminator above plus the projection term <embed(y), h(x)> on its pooled features."""

    def __init__(self, channels: int, width: int, num_classes: int) -> None:
        super().__init__(channels, width)
        self.embed = spectral_norm(nn.Embedding(num_classes, width))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """Realness scores (N,) of images in [0, 1] shown as class y (N,)."""
        if y is None:
            raise ParameterError("a class-conditional discriminator needs the class of each image")
        h = self.features(x * 2 - 1).sum(dim=(2, 3))
        return self.head(h).squeeze(1) + (self.embed(y) * h).sum(1)


@dataclass
class GAN:
    """A generator, its discriminator and the card that says what they were trained on."""

    generator: Generator | ConditionalGenerator
    discriminator: Discriminator
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def conditional(self) -> bool:
        return isinstance(self.generator, ConditionalGenerator)

    @property
    def num_classes(self) -> int:
        return int(getattr(self.generator, "num_classes", self.card.get("num_classes", 0)))

    @property
    def z_dim(self) -> int:
        return self.generator.z_dim

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.card["input_shape"])  # type: ignore[return-value]

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """G(z) or, for a conditional GAN, G(z, y): images (N, C, H, W) in [0, 1], with gradients."""
        if self.conditional:
            if y is None:
                raise ParameterError("a class-conditional GAN needs a class per latent")
            return self.generator(z, y)  # type: ignore[call-arg]
        return self.generator(z)  # type: ignore[call-arg]

    def realness(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """D(x) or, for a conditional GAN, D(x, y): scores (N,)."""
        return self.discriminator(x, y) if self.conditional else self.discriminator(x)  # type: ignore[call-arg]

    def sample(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images from latents (and classes), in eval mode, without gradients; a conditional GAN
        asked for no classes draws class i % num_classes for latent i."""
        if self.conditional and y is None:
            y = torch.arange(len(z), device=z.device) % self.num_classes
        self.generator.eval()
        with torch.no_grad():
            return torch.cat([self.generate(zc, yc) for zc, yc in zip(z.split(256), _split(y, 256, len(z)))])


def _split(y: torch.Tensor | None, size: int, n: int) -> list[torch.Tensor | None]:
    return list(y.split(size)) if y is not None else [None] * len(range(0, n, size))


def build_gan(input_shape: tuple[int, int, int], config: GANConfig, num_classes: int = 0) -> GAN:
    c, h, w = input_shape
    if h != w or h % 4 or not 8 <= h <= 64:
        raise ParameterError(f"the GAN needs square images with a side in 8-64 divisible by 4, got {h}x{w}")
    if c not in (1, 3):
        raise ParameterError(f"the GAN needs 1 or 3 channels, got {c}")
    if not config.conditional:
        return GAN(Generator(config.z_dim, c, h, config.width), Discriminator(c, config.width))
    if num_classes < 2:
        raise ParameterError(f"a class-conditional GAN needs at least 2 classes, got {num_classes}")
    return GAN(
        ConditionalGenerator(config.z_dim, c, h, config.width, num_classes),
        ProjectionDiscriminator(c, config.width, num_classes),
    )


def data_digest(data: Dataset) -> str:
    """sha256 of the training images' float32 bytes and labels: which data a GAN has seen."""
    h = hashlib.sha256()
    h.update(data.x.float().contiguous().numpy().tobytes())
    h.update(data.y.long().contiguous().numpy().tobytes())
    return h.hexdigest()


def hinge_losses(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))."""
    return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()


def _optimizers(gan: GAN, config: GANConfig) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    betas = (config.beta1, config.beta2)
    return (
        torch.optim.Adam(gan.generator.parameters(), lr=config.lr_g, betas=betas),
        torch.optim.Adam(gan.discriminator.parameters(), lr=config.lr_d, betas=betas),
    )


def gan_step(
    gan: GAN,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    real: torch.Tensor,
    g: torch.Generator,
    labels: torch.Tensor | None = None,
) -> tuple[float, float]:
    """One discriminator and one generator update; returns (d_loss, g_loss) before the updates.
    A conditional GAN sees the real images with their ``labels`` and makes fakes of uniformly
    drawn classes."""
    device = real.device
    gan.generator.train()
    gan.discriminator.train()
    z = torch.randn(len(real), gan.z_dim, generator=g).to(device)
    y_fake = torch.randint(0, max(gan.num_classes, 1), (len(real),), generator=g).to(device)
    y_fake = y_fake if gan.conditional else None
    fake = gan.generate(z, y_fake)
    d_loss = hinge_losses(gan.realness(real, labels), gan.realness(fake.detach(), y_fake))
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    g_loss = -gan.realness(fake, y_fake).mean()  # the generator's hinge loss
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    return d_loss.item(), g_loss.item()


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".safetensors") + ".ckpt.safetensors")


def _weight_tensors(gan: GAN) -> dict[str, torch.Tensor]:
    """Both networks' state under ``generator.*`` / ``discriminator.*``, as safetensors wants it."""
    tensors = {f"generator.{k}": v for k, v in gan.generator.state_dict().items()}
    tensors |= {f"discriminator.{k}": v for k, v in gan.discriminator.state_dict().items()}
    return {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}


def _save_checkpoint(path: Path, gan: GAN, opts: tuple[torch.optim.Optimizer, ...], state: dict[str, Any]) -> None:
    tensors = _weight_tensors(gan)
    for name, opt in zip(("opt_g", "opt_d"), opts):
        for i, s in opt.state_dict()["state"].items():
            for k, v in s.items():
                tensors[f"{name}.{i}.{k}"] = torch.as_tensor(v).contiguous().clone()
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"modelprint": json.dumps(state, sort_keys=True)}))


def _load_checkpoint(path: Path, gan: GAN, opts: tuple[torch.optim.Optimizer, ...]) -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as f:
            state = json.loads((f.metadata() or {})["modelprint"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no items())
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: unreadable GAN checkpoint ({e}); delete it to start over") from None
    _load_weights(gan, tensors, path)
    for name, opt in zip(("opt_g", "opt_d"), opts):
        sd = opt.state_dict()
        per_param: dict[int, dict[str, torch.Tensor]] = {}
        for key, v in tensors.items():
            if key.startswith(name + "."):
                _, i, k = key.split(".", 2)
                per_param.setdefault(int(i), {})[k] = v
        sd["state"] = per_param
        opt.load_state_dict(sd)
    return state


def _load_weights(gan: GAN, tensors: dict[str, torch.Tensor], path: Path) -> None:
    for prefix, net in (("generator.", gan.generator), ("discriminator.", gan.discriminator)):
        part = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            net.load_state_dict(part)
        except RuntimeError as e:
            first = str(e).splitlines()[0]
            raise ModelFileError(f"{path}: GAN weights do not fit the architecture in its card ({first})") from None


def train_gan(
    data: Dataset,
    config: GANConfig = GANConfig(),
    *,
    seed: int = 0,
    device: str = "cpu",
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
) -> GAN:
    """Train a GAN on ``data`` (the owner's split). With ``checkpoint`` the state is saved every
    ``config.checkpoint_every`` steps and a matching checkpoint found there is resumed."""
    if len(data) < config.batch_size:
        raise ParameterError(f"the GAN needs at least batch_size={config.batch_size} images, got {len(data)}")
    check_device(device)
    digest = data_digest(data)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gan = build_gan(data.input_shape, config, data.num_classes)
    gan.generator.to(device)
    gan.discriminator.to(device)
    opts = _optimizers(gan, config)
    # steps and checkpoint_every are left out: a finished run's checkpoint can be extended to more steps.
    settings = {k: v for k, v in asdict(config).items() if k not in ("steps", "checkpoint_every")}
    identity = {"config": settings, "seed": seed, "data_sha256": digest}
    start, history, seconds = 0, [], 0.0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.is_file():
        state = _load_checkpoint(ckpt, gan, opts)
        if state.get("identity") != identity:
            raise ParameterError(f"{ckpt} is a checkpoint of another GAN run (settings, seed or data); delete it")
        start, history, seconds = state["step"], state["history"], state["seconds"]
    x, y = data.x.to(device), data.y.long().to(device)
    started = time.perf_counter()
    window: list[tuple[float, float]] = []
    with progress_bar(config.steps, "GAN training", progress) as bar:
        bar.update(start)
        for step in range(start, config.steps):
            g = _step_generator(seed, step)
            idx = torch.randint(0, len(x), (config.batch_size,), generator=g).to(device)
            window.append(gan_step(gan, *opts, x[idx], g, y[idx] if gan.conditional else None))
            if (step + 1) % 100 == 0 or step + 1 == config.steps:
                d, gl = (sum(v) / len(window) for v in zip(*window))
                history.append({"step": step + 1, "d_loss": round(d, 4), "g_loss": round(gl, 4)})
                window = []
                bar.update(0, description=f"GAN training (D {d:.3f}, G {gl:.3f})")
            if ckpt is not None and (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
                elapsed = seconds + time.perf_counter() - started
                state = {"identity": identity, "step": step + 1, "history": history, "seconds": elapsed}
                _save_checkpoint(ckpt, gan, opts, state)
            bar.update(1)
    gan.generator.cpu().eval()
    gan.discriminator.cpu().eval()
    gan.card = _gan_card(data, config, seed, digest, history, round(seconds + time.perf_counter() - started, 2), device)
    return gan


def _gan_card(
    data: Dataset, config: GANConfig, seed: int, digest: str, history: list, seconds: float, device: str
) -> dict[str, Any]:
    """What the GAN's card records: its settings, data, losses and where and how long it trained."""
    return {
        "kind": GAN_KIND,
        "arch": "sagan",
        "config": asdict(config),
        "seed": seed,
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
        "dataset": data.spec,
        "split": data.split,
        "data_images": len(data),
        "data_sha256": digest,
        "history": history,
        "train_seconds": seconds,
        "threads": torch.get_num_threads(),
        "device": device,
        "modelprint_version": __version__,
    }


def gan_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix != ".safetensors":
        p = p.with_name(p.name + ".safetensors")
    return p, p.with_suffix(".json")


def save_gan(gan: GAN, path: str | os.PathLike, *, grid: bool = True) -> Path:
    """Write weights, card (with the weights' sha256) and, with ``grid``, an 8x8 sample PNG."""
    weights, card_path = gan_paths(path)
    tensors = _weight_tensors(gan)
    atomic_write(weights, lambda tmp: save_file(tensors, tmp))
    gan.card["weights_sha256"] = sha256_file(weights)
    atomic_write_text(card_path, json.dumps(gan.card, indent=2, sort_keys=True) + "\n")
    if grid:
        save_sample_grid(gan, weights.with_suffix(".png"))
    return weights


def load_gan(path: str | os.PathLike) -> GAN:
    """Load a GAN file written by :func:`save_gan` (safetensors + JSON card; no code runs)."""
    weights, card_path = gan_paths(path)
    check_readable(weights, "GAN file", ModelFileError)
    check_readable(card_path, "GAN card", ModelFileError)
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        if card.get("kind") != GAN_KIND:
            raise KeyError("kind")
        names = {f.name for f in fields(GANConfig)}
        # GAN files from before class conditioning have no such setting: they are unconditional
        config = GANConfig(**({"conditional": False} | {k: v for k, v in card["config"].items() if k in names}))
        shape = tuple(int(v) for v in card["input_shape"])
        num_classes = int(card.get("num_classes", 0))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ModelFileError(
            f"{card_path}: not a modelprint GAN card ({e}); make one with `modelprint gan train`"
        ) from None
    if len(shape) != 3:
        raise ModelFileError(f"{card_path}: input_shape must be [C, H, W], got {list(shape)}")
    try:
        gan = build_gan(shape, config, num_classes)  # type: ignore[arg-type]
    except ParameterError as e:
        raise ModelFileError(f"{card_path}: {e}") from None
    try:
        with safe_open(str(weights), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no items())
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{weights} is not a readable safetensors file ({e})") from None
    _load_weights(gan, tensors, weights)
    gan.card = card
    gan.generator.eval()
    gan.discriminator.eval()
    return gan


def save_sample_grid(gan: GAN, path: str | os.PathLike, *, rows: int = 8, seed: int = 0) -> None:
    """A grid of samples from fixed latents (the same picture for the same GAN): rows x rows,
    or for a conditional GAN one row per class."""
    plt = pyplot()
    cols = rows
    rows = gan.num_classes if gan.conditional else rows
    z = torch.randn(rows * cols, gan.z_dim, generator=torch.Generator().manual_seed(seed))
    x = gan.sample(z, torch.arange(rows * cols) // cols if gan.conditional else None)
    c, s = x.shape[1], x.shape[2]
    pad = 1
    canvas = torch.ones(c, rows * (s + pad) + pad, cols * (s + pad) + pad)
    for i in range(rows * cols):
        r, q = divmod(i, cols)
        canvas[:, pad + r * (s + pad) : pad + r * (s + pad) + s, pad + q * (s + pad) : pad + q * (s + pad) + s] = x[i]
    scale = -(-56 // s)  # small images drawn at least 56 px wide, to be seen
    canvas = canvas.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    image = canvas.permute(1, 2, 0).numpy()

    def write(tmp: str) -> None:
        if c == 1:
            plt.imsave(tmp, image[..., 0], cmap="gray", vmin=0, vmax=1, format="png")
        else:
            plt.imsave(tmp, image.clip(0, 1), format="png")

    atomic_write(path, write)
