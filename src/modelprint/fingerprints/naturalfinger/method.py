"""NaturalFinger: natural queries from a GAN that positive and negative models label differently.

Paper: Yang, Wang, Wang, "NaturalFinger: Generating Natural Fingerprint with Generative
Adversarial Networks", Algorithm 1:

1. **Screen** ``candidates x n'`` latents z ~ N(0, I): keep those whose image every positive
   trained model classifies correctly (the paper's words); ``n' = oversample x n`` are
   optimised. With a class-conditional GAN (the default of ``modelprint gan train``) each
   latent is drawn with a class c, every class alike, the image is G(z, c) and "correctly"
   means as c; with an unconditional GAN, as the positives' majority.
2. **Labels**: the original label y_o is that class (c or the majority); the adversarial label
   y_a is the negatives' majority label on their own untargeted FGSM examples (step
   ``fgsm_eps``), the class most often different from y_o. Off (ablation): a random
   label other than y_o.
3. **Optimise** the latents with SGD (``lr`` 0.5, ``iterations`` 1000) on::

       L = mean_pos CW(f(T(G(z))), y_o) + mean_neg CW(f(T(G(z))), y_a) + lambda * L_D(G(z))
       CW(Z, t) = max(max_{j != t} Z_j - Z_t, -kappa)

   with T a random input transformation drawn every step (horizontal flip where the data
   allows it, Gaussian noise, translation, shear) and L_D the hinge loss of the GAN's
   own discriminator, relu(1 - D(G(z))) (D(G(z, c), c) when conditional): the image should
   pass as real. With more
   trained models than ``model_batch``, each iteration updates z once per mini-batch of
   models (a seeded shuffle), as the paper does to save memory.
4. **Screen again**: keep the images on which every trained model gives its label, as they
   are and (when ``input_transform`` is on) under ``screen_draws`` random transformations
   (the search itself stops early once ``n`` latents pass or the count stalls):
   at most ``n`` of them are the queries, labelled by the source model. When fewer pass, the
   fingerprint is smaller; with none, generation stops and says which trained models the
   latents did not win over. ``fill=True`` tops the queries up to ``n`` with the best
   failures instead, and records how many (``filled``): queries that missed the method's
   own objective are never kept silently. A share ``holdout`` of the trained models takes no
   part in steps 1-4; the kept queries are screened on them too and the rate recorded
   (``held_out_pass_rate``): how well the queries carry over to models they were not made on.

Trained models come from a training zoo (``trained``: a folder built by ``modelprint zoo
build`` from a ``*-train`` spec, with other seeds than any zoo it is scored on); its source
must be the model being fingerprinted. Their sha256s are recorded in the fingerprint so
that ``bench`` can refuse to score a suspect the method has learnt from.

Parameters (paper symbols where the paper has them):
    gan (str): GAN file from ``modelprint gan train`` on the owner's data.
    trained (str): training zoo folder (positives: the source and models derived from it;
        negatives: independent models and their students).
    iterations (int): latent-optimisation iterations, 1000.
    lr (float): SGD learning rate on the latents, 0.5.
    kappa (float): CW confidence kappa, 5.0 (the paper gives none; chosen on a training zoo's
        held-out trained models, where 1.0 left no latent passing the screen).
    lam (float): weight lambda of the discriminator loss, 0.5.
    fgsm_eps (float): FGSM step for the adversarial labels, 0.03 (8/255-ish; not given).
    candidates (int): latents screened per optimised latent, 4.
    oversample (float): latents optimised per query kept, 2.0.
    model_batch (int): trained models per update, 16 (the paper's 16 models in one batch).
    adversarial_label, input_transform, discriminator_loss (bool): the paper's three
        tricks, each switchable for the ablation.
    flip (bool | None): horizontal flips in T; None = from the GAN's data (not for digits or
        MNIST, whose classes are not mirror-symmetric).
    translate (float): largest shift as a fraction of the side, 0.1.
    shear (float): largest shear factor, 0.1.
    noise (float): Gaussian noise standard deviation in [0, 1] pixel units, 0.03.
    screen_draws (int): random transformations each query must survive besides the image as
        sent, 1 (the paper transforms once).
    fill (bool): top the queries up to n with the best failures of the screen, False.
    holdout (float): share of the trained models (never the source) held out of the
        optimisation to screen the kept queries on models they were not made on, 0.25.
    screen_every (int): iterations between screens that freeze the latents that pass and
        stop the search once n have, 50 (0: never; the paper runs every iteration).
    patience (int): screens in a row without more latents passing before the search stops, 4.
    screen_only (str): trained models kept out of the optimisation and screened with the
        held-out ones, as space-separated patterns (``fnmatch``; ids hold commas) over each
        model's id and zoo category, e.g. ``*advtrain*``, "" (none): negatives that no latent wins over stall the
        whole search, since every query must fool them all.
    shell (bool): after every step, rescale each latent to norm sqrt(z_dim), where the prior
        N(0, I) puts its mass, False (the paper does not): latents that drift off it make images
        the generator never learnt to make. ``latent_norm`` records the kept latents' mean
        norm over sqrt(z_dim) either way.

Shapes: queries (n, C, H, W) in [0, 1] (the GAN's sigmoid output); labels (n,) int64.

Example::

    nf = create_method("naturalfinger", gan="owner-gan.safetensors", trained="train-zoo")
    fp = nf.generate(load_model("train-zoo/models/source.safetensors"), n=100, seed=0)
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..._io import sha256_file
from ...data import Dataset
from ...errors import ParameterError
from ...models import ModelprintModel
from ...progress import progress_bar
from ..base import FingerprintMethod, register_method
from ..learnt import NO_FLIP_DATA, TRAINED_ZOO, TrainedModels, cw_loss, load_trained, random_transform
from .gan import gan_paths, load_gan


def _predict(models: list[ModelprintModel], x: torch.Tensor) -> torch.Tensor:
    """Labels (models, N)."""
    with torch.no_grad():
        return torch.stack([m.predict(x) for m in models])


def _majority(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Most frequent label per column of (models, N); ties go to the smaller class."""
    counts = F.one_hot(labels, num_classes).sum(0)
    return counts.argmax(1)


def class_histogram(labels: torch.Tensor, num_classes: int) -> list[int]:
    """How many of ``labels`` fall in each class 0 .. num_classes - 1."""
    return torch.bincount(labels.long().cpu(), minlength=num_classes).tolist()


def final_screen(
    nets: list[ModelprintModel], targets: list[torch.Tensor], views: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Whether every model gives its target on every view of each image (``ok``), the share of
    (model, view) pairs that do (``score``), and per model the images it gives its target on every view."""
    n = len(views[0])
    hits, ok, per_model = torch.zeros(n), torch.ones(n, dtype=torch.bool), []
    with torch.no_grad():
        for net, t in zip(nets, targets):
            right_all = torch.ones(n, dtype=torch.bool)
            for view in views:
                right = net.predict(view).cpu() == t.cpu()
                hits += right.float()
                right_all &= right
            ok &= right_all
            per_model.append(int(right_all.sum()))
    return ok, hits / (len(views) * len(nets)), per_model


def _nothing_passed(ids: list[str], per_model: list[int], latents: int, views: int) -> ParameterError:
    worst = sorted(zip(ids, per_model), key=lambda p: p[1])[:3]
    return ParameterError(
        f"naturalfinger: none of the {latents} optimised latents passed the final screen (every trained model "
        f"gives its target label on {views} views); fewest successes: "
        + ", ".join(f"{rid} {k}/{latents}" for rid, k in worst)
        + ". Raise iterations, lower kappa or screen_draws, or pass fill=true to keep the best failures"
    )


def _parts(trained: TrainedModels, held: set[int]) -> tuple[TrainedModels, TrainedModels]:
    """``trained`` cut in two: the models whose index (positives, then negatives) is not in
    ``held``, and those that are."""
    models = trained.positives + trained.negatives

    def part(keep: bool) -> TrainedModels:
        idx = [i for i in range(len(models)) if (i in held) != keep]
        return TrainedModels(
            [models[i] for i in idx if i < len(trained.positives)],
            [models[i] for i in idx if i >= len(trained.positives)],
            [trained.records[i] for i in idx],
            [trained.categories[i] for i in idx],
        )

    return part(True), part(False)


def split_trained(
    trained: TrainedModels, share: float, g: torch.Generator, *, patterns: tuple[str, ...] = ()
) -> tuple[TrainedModels, TrainedModels]:
    """Hold ``share`` of the positives (never the source, which comes first) and of the negatives
    out of the optimisation, at least one of each kind while one of that kind is left to optimise
    on: the queries are then screened on models they were not made on. Models whose id or zoo
    category matches one of ``patterns`` (``fnmatch``) are held out first, whatever the draw; the
    share is drawn from the rest. The source is never held out."""
    categories = trained.categories

    def matches(i: int, pattern: str) -> bool:
        return fnmatchcase(trained.records[i]["id"], pattern) or fnmatchcase(categories[i], pattern)

    if unmatched := [p for p in patterns if not any(matches(i, p) for i in range(1, len(categories)))]:
        known = ", ".join(sorted(set(categories)))
        raise ParameterError(
            f"screen_only: {', '.join(unmatched)} matches no trained model but the source; patterns are "
            f"matched against ids (e.g. {trained.records[-1]['id']}) and categories ({known})"
        )
    named = {i for i in range(1, len(categories)) if any(matches(i, p) for p in patterns)}
    pos = [i for i in range(1, len(trained.positives)) if i not in named]
    neg = [i for i in range(len(trained.positives), len(trained.records)) if i not in named]
    if not neg:
        raise ParameterError(f"screen_only {' '.join(patterns)} leaves no negative trained model to optimise against")
    held = set(named)
    for kind in (pos, neg):
        k = min(max(round(share * len(kind)), 1 if share > 0 else 0), len(kind) - (kind is neg))
        held |= {kind[i] for i in torch.randperm(len(kind), generator=g)[:k].tolist()}
    return _parts(trained, held)


def screened_queries(ok: torch.Tensor, score: torch.Tensor, n: int, *, fill: bool) -> list[int]:
    """Indices of the queries to keep: those that passed the screen (``ok``), best ``score``
    first, at most ``n``; with ``fill``, topped up to ``n`` with the best failures."""
    ranked = sorted(range(len(ok)), key=lambda i: (-int(ok[i]), -float(score[i]), i))
    return ranked[:n] if fill else ranked[: min(n, int(ok.sum()))]


@register_method("naturalfinger")
@dataclass(kw_only=True)
class NaturalFinger(FingerprintMethod):
    """NaturalFinger (Yang, Wang and Wang): natural queries from the owner's GAN, their latents optimised
    so that the training zoo's positives keep the source's label and its negatives take an
    adversarial label, through random input transformations (Algorithm 1).

    Arguments:
        gan (str): GAN file (``modelprint gan train``). trained (str): training zoo folder.
        iterations (int): 1000. lr (float): 0.5. kappa (float): CW margin, 5.0. lam (float):
        weight of the discriminator loss, 0.5. fgsm_eps (float): 0.03. candidates (int): 4.
        oversample (float): 2.0. model_batch (int): 16. adversarial_label, input_transform,
        discriminator_loss (bool): the paper's tricks (``bench --ablation`` switches them).
        flip, translate, shear, noise: the random transformation. screen_draws (int): 1.
        fill (bool): keep the best failures of the final screen to reach n, False. holdout
        (float): 0.25. screen_every (int): 50. patience (int): 4. screen_only (str):
        patterns of trained models screened but not optimised against, "". shell (bool): keep
        the latents at norm sqrt(z_dim), False.

    Shape: queries (n, C, H, W) in [0, 1], labels (n,).

    Example::

        nf = create_method("naturalfinger", gan="owner-gan.safetensors", trained="train-zoo")
        fp = nf.generate(load_model("train-zoo/models/source.safetensors"), n=100, seed=0)
    """

    paper: ClassVar[str] = (
        'Yang, Wang and Wang, "NaturalFinger: Generating Natural Fingerprint with Generative Adversarial Networks"'
    )

    gan: str | None = None
    trained: str | None = None
    iterations: int = 1000
    lr: float = 0.5
    kappa: float = 5.0
    lam: float = 0.5
    fgsm_eps: float = 0.03
    candidates: int = 4
    oversample: float = 2.0
    model_batch: int = 16
    adversarial_label: bool = True
    input_transform: bool = True
    discriminator_loss: bool = True
    flip: bool | None = None
    translate: float = 0.1
    shear: float = 0.1
    noise: float = 0.03
    screen_draws: int = 1
    fill: bool = False
    holdout: float = 0.25
    screen_every: int = 50
    patience: int = 4
    screen_only: str = ""
    shell: bool = False

    ablation: ClassVar[dict[str, str]] = {
        "AL": "adversarial_label",
        "IT": "input_transform",
        "DL": "discriminator_loss",
    }
    # The paper's Table 3 (ARUC on FingerBench), keyed by the tricks kept.
    paper_ablation: ClassVar[dict[str, float]] = {
        "none": 0.79, "AL": 0.84, "IT": 0.86, "DL": 0.80, "AL+IT": 0.87, "AL+DL": 0.86, "IT+DL": 0.86, "AL+IT+DL": 0.91,
    }  # fmt: skip

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.lr <= 0 or self.kappa < 0 or self.lam < 0:
            raise ParameterError("iterations >= 0, lr > 0, kappa >= 0 and lam >= 0 are required")
        if self.candidates < 1 or self.oversample < 1 or self.model_batch < 1 or self.screen_draws < 0:
            raise ParameterError(
                "candidates >= 1, oversample >= 1, model_batch >= 1 and screen_draws >= 0 are required"
            )
        if not 0 <= self.holdout < 1 or self.screen_every < 0 or self.patience < 1:
            raise ParameterError(
                f"holdout must be in [0, 1), screen_every >= 0 and patience >= 1, got "
                f"{self.holdout}, {self.screen_every}, {self.patience}"
            )
        if not 0 <= self.translate <= 0.5 or not 0 <= self.shear <= 1 or not 0 <= self.noise <= 1:
            raise ParameterError("translate must be in [0, 0.5], shear and noise in [0, 1]")
        if not 0 <= self.fgsm_eps <= 1:
            raise ParameterError(f"fgsm_eps must be in [0, 1], got {self.fgsm_eps}")

    def summary(self, fp: Any) -> str:
        m = fp.meta
        if "final_successes" not in m:
            return super().summary(fp)
        # fingerprints made before `fill` existed kept failures without saying so: count them from kept_successes
        k = m.get("filled", len(fp) - int(m.get("kept_successes", len(fp))))
        filled = f", {k} failures of the screen kept to fill n" if k else ""
        lines = [
            f"{len(fp)} queries; {m['final_successes']} of {m['optimised']} optimised latents passed the final "
            f"screen{filled}"
        ]
        if "held_out_screen" in m:
            lines.append(
                f"held-out trained models ({len(m['held_out_models'])}): {m['held_out_screen']} queries pass "
                "their screen"
            )
        if "query_classes" in m:
            gan = "class-conditional GAN" if m.get("gan_conditional") else "unconditional GAN"
            lines.append(f"{gan}; query classes {m['query_classes']}")
        return "\n".join(lines)

    def _inputs(self, model: ModelprintModel) -> tuple[Any, TrainedModels]:
        if not self.gan or not self.trained:
            raise ParameterError(
                "naturalfinger needs a GAN and trained models: `gan`=GAN.safetensors (modelprint gan train "
                "--data DATA --split owner) and `trained`=ZOO (modelprint zoo build SPEC-train)",
                params=("gan", "trained"),
            )
        gan = load_gan(self.gan)
        if tuple(gan.input_shape) != tuple(model.card.input_shape):
            raise ParameterError(
                f"the GAN makes {list(gan.input_shape)} images, the model takes {list(model.card.input_shape)}"
            )
        if gan.conditional and gan.num_classes != model.card.num_classes:
            raise ParameterError(
                f"the GAN draws {gan.num_classes} classes, the model has {model.card.num_classes}: train the GAN "
                "on the model's data"
            )
        return gan, load_trained(self.trained, model)

    def required_inputs(self) -> dict[str, str]:
        return {"gan": "a GAN file (modelprint gan train --data DATA --split owner)", "trained": TRAINED_ZOO}

    def inputs_digest(self) -> str:
        h = hashlib.sha256()
        files = [gan_paths(self.gan)[0]] if self.gan else []
        files += [Path(self.trained) / "manifest.jsonl"] if self.trained else []
        for path in files:
            if path.is_file():
                h.update(sha256_file(path).encode())
        return h.hexdigest()

    def _flip(self, gan: Any) -> bool:
        if self.flip is not None:
            return bool(self.flip)
        return not str(gan.card.get("dataset", "")).startswith(NO_FLIP_DATA)

    def _generate(
        self, model: ModelprintModel, data: Dataset | None, *, n: int, seed: int, device: str, progress: bool
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        gan, trained = self._inputs(model)
        return self._search(model, gan, trained, n=n, seed=seed, device=device, progress=progress)

    def _search(
        self,
        model: ModelprintModel,
        gan: Any,
        trained: TrainedModels,
        *,
        n: int,
        seed: int,
        device: str,
        progress: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        flip = self._flip(gan)
        for net in [*trained.positives, *trained.negatives, gan.generator, gan.discriminator]:
            net.to(device).eval()
            net.requires_grad_(False)
        used, held = self.split(trained, seed)
        nets = used.positives + used.negatives
        g = torch.Generator().manual_seed(seed)

        def transform(x: torch.Tensor) -> torch.Tensor:
            return random_transform(x, g, flip=flip, translate=self.translate, shear=self.shear, noise=self.noise)

        def views(x: torch.Tensor) -> list[torch.Tensor]:
            # the image as it will be sent, and under transformations when the method trains through them
            return [x] + ([transform(x) for _ in range(self.screen_draws)] if self.input_transform else [])

        z, c, y_o, info = self._screen_latents(model, gan, used, math.ceil(self.oversample * n), g, device)
        y_a = self._adversarial_labels(used.negatives, gan.sample(z, c), y_o, model.card.num_classes, g)
        targets = [y_o] * len(used.positives) + [y_a] * len(used.negatives)
        z, info["iterations_run"] = self._optimise(
            gan, z, c, nets, targets, len(used.positives), transform, views, n, g, progress
        )

        x, seen, ok, keep, screen = self._final_screen(gan, used, z, c, targets, views, n)
        info |= self._held_out_screen(held, y_o[keep], y_a[keep], [v[keep] for v in seen])
        x = x[keep].cpu()
        expected = model.predict(x.to(device)).cpu()
        info |= {
            "gan_sha256": gan.card.get("weights_sha256"),
            "gan_data_sha256": gan.card.get("data_sha256"),
            "trained_models": trained.records,
            "flip": flip,
            "final_successes": int(ok.sum()),
            "optimised": len(z),
            "latent_norm": round((z[keep].norm(dim=1) / math.sqrt(z.shape[1])).mean().item(), 4) if keep else None,
            "kept_successes": int(ok[keep].sum()),
            "filled": int(len(keep) - ok[keep].sum()),
            "screen_views": len(seen),
            "screen_per_model": screen,
            "query_classes": class_histogram(expected, model.card.num_classes),
            "trained_positive_match": round((_predict(used.positives, x) == expected).float().mean().item(), 4),
            "trained_negative_match": round((_predict(used.negatives, x) == expected).float().mean().item(), 4),
        }
        extras = {"original": y_o[keep].cpu(), "adversarial": y_a[keep].cpu(), "latent": z[keep].cpu()}
        if c is not None:
            extras["gan_class"] = c[keep].cpu()
        return x, expected, extras, info

    def _final_screen(
        self,
        gan: Any,
        used: TrainedModels,
        z: torch.Tensor,
        c: torch.Tensor | None,
        targets: list[torch.Tensor],
        views: Any,
        n: int,
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor, list[int], dict[str, str]]:
        """The final screen on the models the latents were optimised on: the images, their views,
        which passed, the ``n`` kept (the best, filled up when ``fill``) and each model's count."""
        x = gan.sample(z, c)
        seen = views(x)
        ok, score, per_model = final_screen(used.positives + used.negatives, targets, seen)
        screen = {r["id"]: f"{k}/{len(x)}" for r, k in zip(used.records, per_model)}
        if int(ok.sum()) == 0 and not self.fill:
            raise _nothing_passed(list(screen), per_model, len(x), len(seen))
        return x, seen, ok, screened_queries(ok, score, n, fill=self.fill), screen

    @staticmethod
    def _held_out_screen(
        held: TrainedModels, y_o: torch.Tensor, y_a: torch.Tensor, views: list[torch.Tensor]
    ) -> dict[str, Any]:
        """The final screen on the trained models held out of the optimisation: how many of the kept
        queries every held-out positive gives y_o and every held-out negative y_a, on the same views."""
        if not held.records or not len(y_o):
            return {"held_out_models": [r["id"] for r in held.records]}
        targets = [y_o] * len(held.positives) + [y_a] * len(held.negatives)
        ok, _, per_model = final_screen(held.positives + held.negatives, targets, views)
        return {
            "held_out_models": [r["id"] for r in held.records],
            "held_out_screen": f"{int(ok.sum())}/{len(ok)}",
            "held_out_pass_rate": round(ok.float().mean().item(), 4),
            "held_out_per_model": {r["id"]: f"{k}/{len(ok)}" for r, k in zip(held.records, per_model)},
        }

    def _screen_latents(
        self, model: ModelprintModel, gan: Any, trained: TrainedModels, n_opt: int, g: torch.Generator, device: str
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, dict[str, Any]]:
        """Step 1: the ``n_opt`` of ``candidates x n_opt`` latents the positives agree on most, with
        their classes (a conditional GAN is asked for every class alike) and original labels y_o:
        the GAN's class, or without conditioning the positives' majority."""
        k = model.card.num_classes
        z_all = torch.randn(n_opt * self.candidates, gan.z_dim, generator=g).to(device)
        c_all = (torch.randperm(len(z_all), generator=g) % k).to(device) if gan.conditional else None
        x_all = gan.sample(z_all, c_all)
        pos_labels = _predict(trained.positives, x_all).to(device)
        wanted = c_all if c_all is not None else _majority(pos_labels, k)
        agreement = (pos_labels == wanted).float().mean(0)
        order = sorted(range(len(z_all)), key=lambda i: (-agreement[i].item(), i))[:n_opt]
        source_labels = pos_labels[0]  # the source is the first positive
        info: dict[str, Any] = {
            "gan_conditional": bool(gan.conditional),
            "screened_latents": f"{int((agreement == 1).sum())} of {len(z_all)} agreed on all positives",
            "candidate_classes": class_histogram(source_labels, k),
        }
        if c_all is not None:
            info["gan_class_agreement"] = round((source_labels == c_all).float().mean().item(), 4)
        c = c_all[order] if c_all is not None else None
        return z_all[order].clone(), c, wanted[order], info

    def _optimise(
        self,
        gan: Any,
        z: torch.Tensor,
        c: torch.Tensor | None,
        nets: list[ModelprintModel],
        targets: list[torch.Tensor],
        n_pos: int,
        transform: Any,
        views: Any,
        n: int,
        g: torch.Generator,
        progress: bool,
    ) -> tuple[torch.Tensor, int]:
        """Step 3: SGD on the latents, one update per mini-batch of ``model_batch`` trained models.
        Every ``screen_every`` iterations the latents that pass the final screen are frozen (their
        objective is met) and the search stops once ``n`` have, or when ``patience`` checks in a
        row found no more passing than the best so far: more iterations would only move latents
        that already do what they are for, or that have stopped getting there. Returns the
        latents and the iterations run."""
        z.requires_grad_(True)
        opt = torch.optim.SGD([z], lr=self.lr)
        active = torch.arange(len(z), device=z.device)
        best, stalled = -1, 0
        with progress_bar(self.iterations, f"{self.name} latents", progress) as bar:
            for it in range(self.iterations):
                if self.screen_every and it and it % self.screen_every == 0:
                    passed, _, _ = final_screen(nets, targets, views(gan.sample(z.detach(), c)))
                    bar.update(0, description=f"{self.name} latents ({int(passed.sum())} pass)")
                    best, stalled = (int(passed.sum()), 0) if passed.sum() > best else (best, stalled + 1)
                    if best >= n or stalled >= self.patience:
                        return z.detach(), it
                    active = (~passed).nonzero().squeeze(1).to(z.device)
                perm = torch.randperm(len(nets), generator=g).tolist()
                c_now = c[active] if c is not None else None
                for start in range(0, len(nets), self.model_batch):
                    batch = perm[start : start + self.model_batch]
                    t_now = [targets[i][active] for i in batch]
                    loss = self._loss(
                        gan, z[active], c_now, [nets[i] for i in batch], t_now, [i < n_pos for i in batch], transform
                    )
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    self._to_shell(z, active)
                bar.update(1)
        return z.detach(), self.iterations

    def _to_shell(self, z: torch.Tensor, active: torch.Tensor) -> None:
        """With ``shell``, rescale the latents still moving (``active``; the frozen ones passed as
        they are) to norm sqrt(z_dim), in place."""
        if self.shell:
            with torch.no_grad():
                moving = z[active]
                z[active] = moving * math.sqrt(z.shape[1]) / moving.norm(dim=1, keepdim=True).clamp(min=1e-12)

    def split(self, trained: TrainedModels, seed: int) -> tuple[TrainedModels, TrainedModels]:
        """The trained models the latents are optimised against, and those held out (``holdout``
        drawn with ``seed``, and every model ``screen_only`` matches)."""
        patterns = tuple(self.screen_only.split())
        return split_trained(trained, self.holdout, torch.Generator().manual_seed(seed + 1), patterns=patterns)

    def _adversarial_labels(
        self,
        negatives: list[ModelprintModel],
        x: torch.Tensor,
        y_o: torch.Tensor,
        num_classes: int,
        g: torch.Generator,
    ) -> torch.Tensor:
        if not self.adversarial_label:
            shift = torch.randint(1, num_classes, (len(x),), generator=g).to(y_o.device)
            return (y_o + shift) % num_classes
        votes = torch.zeros(len(x), num_classes, device=x.device)
        soft = torch.zeros(len(x), num_classes, device=x.device)
        for net in negatives:
            xa = x.detach().clone().requires_grad_(True)
            logits = net(xa)
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, y_o, reduction="sum"), xa)
            with torch.no_grad():
                adv_logits = net((x + self.fgsm_eps * grad.sign()).clamp(0, 1))
                votes += F.one_hot(adv_logits.argmax(1), num_classes).float()
                soft += adv_logits.softmax(1)
        # The class most negatives move to; where none leaves y_o, their most likely other class.
        votes.scatter_(1, y_o[:, None], 0)
        soft.scatter_(1, y_o[:, None], -1)
        return torch.where(votes.amax(1) > 0, votes.argmax(1), soft.argmax(1))

    def _loss(
        self,
        gan: Any,
        z: torch.Tensor,
        c: torch.Tensor | None,
        nets: list[ModelprintModel],
        targets: list[torch.Tensor],
        positive: list[bool],
        transform: Any,
    ) -> torch.Tensor:
        x = gan.generate(z, c)
        xt = transform(x) if self.input_transform else x
        pos = [cw_loss(net(xt), t, self.kappa) for net, t, p in zip(nets, targets, positive) if p]
        neg = [cw_loss(net(xt), t, self.kappa) for net, t, p in zip(nets, targets, positive) if not p]
        # Per-image sums: each latent's gradient is its own image's loss, whatever n is.
        loss = sum((torch.stack(part).mean(0).sum() for part in (pos, neg) if part), torch.zeros((), device=z.device))
        if self.discriminator_loss and self.lam > 0:
            loss = loss + self.lam * F.relu(1 - gan.realness(x, c)).sum()
        return loss
