"""Why NaturalFinger's latents do or do not reach their objective: its search, watched.

On a training zoo only (never the zoo a benchmark scores), with a share of the trained models
held out of the optimisation, it runs the latent search of ``naturalfinger`` for each setting
in a small grid and records every ``--every`` iterations:

  pass_screen_1 / pass_screen_4  latents every optimised model gives its target on the image as
                 sent and on 1 (the paper's screen) / 4 random transformations
  pass_clean     the same on the image as sent only
  held_out       of the latents passing the 1-draw screen, how many pass it on the held-out models
  per_model      per optimised model, the latents it gives its target on all 5 views
  held_per_model per held-out model, the latents it gives its target on the 1-draw screen
  pos_cw, neg_cw the mean CW losses of positives and negatives (-kappa when all are met)
  d_hinge        the discriminator term relu(1 - D(G(z)))
  z_norm         the latents' mean norm (sqrt(z_dim) under the prior)

Settings the grid can vary include ``screen_only`` (patterns of trained models screened
with the held-out ones instead of optimised against, e.g. ``*advtrain*``) and ``shell``
(latents rescaled to norm sqrt(z_dim) after every step); the held-out column then includes
the models the patterns match.

Run:  python benchmarks/bench_naturalfinger_search.py --trained ZOO --gan GAN \\
          [--grid '{"kappa": [1, 5], "lr": [0.5]}'] [--iterations 400] [--n 50] --out FILE
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import time

import torch
import torch.nn.functional as F

os.environ.setdefault("MODELPRINT_QUIET", "1")

from modelprint.fingerprints import create_method  # noqa: E402
from modelprint.fingerprints.learnt import cw_loss, load_trained, random_transform  # noqa: E402
from modelprint.fingerprints.naturalfinger.gan import load_gan  # noqa: E402
from modelprint.models import load_model  # noqa: E402
from modelprint.zoo import ZooManifest, source_row  # noqa: E402


def passing(nets, targets, views) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Per view count, whether every model gives its target on the first k views; per model on all."""
    with torch.no_grad():
        right = torch.stack([torch.stack([net.predict(v) == t for v in views]) for net, t in zip(nets, targets)])
    return right, [r.all(0) for r in right]  # right: (models, views, n)


def watch(method, source, gan, trained, *, n: int, iterations: int, every: int, seed: int) -> list[dict]:
    used, held = method.split(trained, seed)
    nets, n_pos = used.positives + used.negatives, len(used.positives)
    g = torch.Generator().manual_seed(seed)
    flip = method._flip(gan)

    def transform(x):
        return random_transform(x, g, flip=flip, translate=method.translate, shear=method.shear, noise=method.noise)

    z, c, y_o, _ = method._screen_latents(source, gan, used, math.ceil(method.oversample * n), g, "cpu")
    y_a = method._adversarial_labels(used.negatives, gan.sample(z, c), y_o, source.card.num_classes, g)
    targets = [y_o] * n_pos + [y_a] * len(used.negatives)
    held_targets = [y_o] * len(held.positives) + [y_a] * len(held.negatives)
    z.requires_grad_(True)
    opt = torch.optim.SGD([z], lr=method.lr)
    log, started = [], time.perf_counter()
    for it in range(iterations + 1):
        if it % every == 0:
            x = gan.sample(z.detach(), c)
            views = [x] + [transform(x) for _ in range(4)]
            right, per_model = passing(nets, targets, views)
            one = right[:, :2].all(1).all(0)
            held_right, held_per_model = passing(held.positives + held.negatives, held_targets, views[:2])
            with torch.no_grad():
                cw = [cw_loss(net(x), t, method.kappa).mean().item() for net, t in zip(nets, targets)]
                d = F.relu(1 - gan.realness(x, c)).mean().item()
            log.append({
                "iteration": it,
                "pass_screen_1": int(one.sum()),
                "pass_screen_4": int(right.all(1).all(0).sum()),
                "pass_clean": int(right[:, 0].all(0).sum()),
                "held_out": f"{int((one & held_right.all(1).all(0)).sum())}/{int(one.sum())}",
                "pos_cw": round(sum(cw[:n_pos]) / n_pos, 3),
                "neg_cw": round(sum(cw[n_pos:]) / (len(cw) - n_pos), 3),
                "d_hinge": round(d, 3),
                "z_norm": round(z.detach().norm(dim=1).mean().item(), 2),
                "per_model": {r["id"]: int(p.sum()) for r, p in zip(used.records, per_model)},
                "held_per_model": {r["id"]: int(p.sum()) for r, p in zip(held.records, held_per_model)},
                "seconds": round(time.perf_counter() - started, 1),
            })  # fmt: skip
            print(json.dumps({k: v for k, v in log[-1].items() if "per_model" not in k}), flush=True)
        if it == iterations:
            break
        perm = torch.randperm(len(nets), generator=g).tolist()
        for start in range(0, len(nets), method.model_batch):
            batch = perm[start : start + method.model_batch]
            loss = method._loss(gan, z, c, [nets[i] for i in batch], [targets[i] for i in batch],
                                [i < n_pos for i in batch], transform)  # fmt: skip
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            method._to_shell(z, torch.arange(len(z)))
    return log


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trained", required=True)
    ap.add_argument("--gan", required=True)
    ap.add_argument("--grid", default='{"kappa": [1, 5]}', help="JSON: naturalfinger parameter -> values")
    ap.add_argument("--iterations", type=int, default=400)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    manifest = ZooManifest.read(args.trained)
    source = load_model(manifest.path(source_row(manifest)))
    gan = load_gan(args.gan)
    grid = json.loads(args.grid)
    runs = []
    for values in itertools.product(*grid.values()):
        settings = dict(zip(grid, values))
        method = create_method("naturalfinger", gan=args.gan, trained=args.trained, **settings)
        trained = load_trained(args.trained, source)
        print("settings", settings, flush=True)
        log = watch(method, source, gan, trained, n=args.n, iterations=args.iterations, every=args.every,
                    seed=args.seed)  # fmt: skip
        runs.append({"settings": settings, "log": log})
    result = {
        "trained": os.path.basename(os.path.normpath(args.trained)),
        "gan": os.path.basename(args.gan),
        "gan_conditional": gan.conditional,
        "optimised_latents": math.ceil(2 * args.n),
        "iterations": args.iterations,
        "seed": args.seed,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "runs": runs,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
