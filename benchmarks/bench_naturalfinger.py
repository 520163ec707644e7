"""NaturalFinger's cost, as ratios within one run.

With a training zoo and a GAN (``modelprint zoo build mini-digits-train``, ``modelprint gan
train``) it measures, on one torch thread:

  bound      one batched forward + backward (input gradient) of the optimised images through
             every trained model, the CW losses summed: the work no implementation avoids
  iteration  one latent-optimisation iteration of ours: generator forward, random transforms,
             every trained model, the discriminator loss, backward to the latents, SGD step
  ratio      iteration / bound (target <= 1.5)

and reads the GAN's training time from its card. With ``--compare`` it also times two whole
generations in the same run: every one of the 1,000 iterations (``screen_every=0``, how the
method ran before) against the defaults (screens every 50 iterations freeze the latents that
pass and stop a search that is complete or stalled), and gives their ratio and what each kept.

Run:  python benchmarks/bench_naturalfinger.py --trained ZOO --gan GAN [--n 100] [--compare] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import torch

os.environ.setdefault("MODELPRINT_QUIET", "1")

from modelprint.fingerprints import create_method  # noqa: E402
from modelprint.fingerprints.learnt import cw_loss, load_trained, random_transform  # noqa: E402
from modelprint.fingerprints.naturalfinger.gan import load_gan  # noqa: E402
from modelprint.models import load_model  # noqa: E402
from modelprint.zoo import ZooManifest, source_row  # noqa: E402


def best_of(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def compare(args: argparse.Namespace, source) -> dict:
    """Two whole generations, same seed and inputs: all iterations, then the early-stopping defaults."""
    out = {}
    for name, settings in (("every_iteration", {"screen_every": 0}), ("early_stop", {})):
        m = create_method("naturalfinger", gan=args.gan, trained=args.trained, **settings)
        t = time.perf_counter()
        fp = m.generate(source, n=args.n, seed=0, progress=False)
        meta = fp.meta
        out[name] = {
            "seconds": round(time.perf_counter() - t, 1),
            "iterations_run": meta["iterations_run"],
            "queries": len(fp),
            "final_successes": meta["final_successes"],
            "held_out_screen": meta.get("held_out_screen"),
            "held_out_pass_rate": meta.get("held_out_pass_rate"),
        }
        print(name, json.dumps(out[name]), flush=True)
    out["speedup"] = round(out["every_iteration"]["seconds"] / out["early_stop"]["seconds"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trained", required=True)
    ap.add_argument("--gan", required=True)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--generate", type=int, default=0, help="also time a whole generation with this many iterations")
    ap.add_argument("--compare", action="store_true", help="time a full-length and an early-stopping generation")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    manifest = ZooManifest.read(args.trained)
    source = load_model(manifest.path(source_row(manifest)))
    method = create_method("naturalfinger", gan=args.gan, trained=args.trained)
    gan = load_gan(args.gan)
    trained = load_trained(args.trained, source)
    nets = trained.positives + trained.negatives
    for net in nets:
        net.eval().requires_grad_(False)
    gan.generator.eval().requires_grad_(False)
    gan.discriminator.eval().requires_grad_(False)
    n_opt = math.ceil(method.oversample * args.n)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n_opt, gan.z_dim, generator=g).requires_grad_(True)
    c = torch.arange(n_opt) % source.card.num_classes if gan.conditional else None
    x0 = gan.sample(z.detach(), c)
    targets = [torch.randint(0, source.card.num_classes, (n_opt,), generator=g) for _ in nets]
    opt = torch.optim.SGD([z], lr=method.lr)

    def bound() -> None:
        x = x0.clone().requires_grad_(True)
        loss = sum(cw_loss(net(x), t, method.kappa).sum() for net, t in zip(nets, targets))
        torch.autograd.grad(loss, x)

    def transform(x: torch.Tensor) -> torch.Tensor:
        return random_transform(x, g, flip=True, translate=method.translate, shear=method.shear, noise=method.noise)

    positive = [i < len(trained.positives) for i in range(len(nets))]

    def iteration() -> None:
        loss = method._loss(gan, z, c, nets, targets, positive, transform)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t_bound, t_iter = best_of(bound, args.repeat), best_of(iteration, args.repeat)
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": 1},
        "trained_models": len(nets),
        "optimised_images": n_opt,
        "input_shape": list(source.card.input_shape),
        "bound_s": round(t_bound, 4),
        "iteration_s": round(t_iter, 4),
        "ratio": round(t_iter / t_bound, 2),
        "estimated_1000_iterations_s": round(1000 * t_iter, 1),
        "gan_train_seconds": gan.card.get("train_seconds"),
        "gan_steps": gan.card.get("config", {}).get("steps"),
    }
    if args.generate:
        m = create_method("naturalfinger", gan=args.gan, trained=args.trained, iterations=args.generate)
        t = time.perf_counter()
        m.generate(source, n=args.n, seed=0, progress=False)
        result[f"generation_{args.generate}_iterations_s"] = round(time.perf_counter() - t, 1)
    if args.compare:
        result["compare"] = compare(args, source)
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
