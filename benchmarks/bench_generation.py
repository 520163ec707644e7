"""Generation throughput of the characteristic-example methods, as ratios within one run.

For each model (small CNN on digits upscaled to 32 px, trained; CIFAR ResNet-18 at 32 px,
3 channels, random weights — speed does not depend on training) it measures:

  bound    one batched forward + backward (input gradient only) of the n examples
  C/step   our C generation per step with every example active (eta = 0)
  GM/step  our RC+GM (q = 10) per step, against q x bound
  LTRC     our LTRC per step against C per step
  naive    a research script: one example at a time, weight gradients on, no early stop,
           GM as a loop over deep-copied noisy models; timed on a few examples and steps
           and scaled to n examples x 500 steps
  ART      Adversarial Robustness Toolbox targeted PGD (L-inf, eps = 1 so only the [0, 1]
           clip binds, same alpha and steps) on the same model and starting points

Run:  python benchmarks/bench_generation.py [--quick]   (needs `pip install -e .[bench]` for ART)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time

import torch
import torch.nn.functional as F

os.environ.setdefault("MODELPRINT_QUIET", "1")

from modelprint.data import load_splits  # noqa: E402
from modelprint.fingerprints import create_method  # noqa: E402
from modelprint.models import create_model  # noqa: E402
from modelprint.train import TrainConfig, train_new  # noqa: E402


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bound(model, x, t, channels_last: bool) -> float:
    """One batched forward+backward w.r.t. the input only: the floor of a generation step."""
    for p in model.parameters():
        p.requires_grad_(False)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    xs = x.contiguous(memory_format=fmt)

    def step():
        xr = xs.detach().requires_grad_(True)
        loss = F.cross_entropy(model(xr), t, reduction="none").sum()
        torch.autograd.grad(loss, xr)

    step()
    result = timed(step, repeat=3)
    model.to(memory_format=torch.contiguous_format)
    for p in model.parameters():
        p.requires_grad_(True)
    return result


def naive_step_per_example(model, x, t, q: int, delta: float, alpha: float) -> float:
    """Seconds per example-step of a per-example loop with weight gradients on (and, for GM,
    q deep copies of the model with fresh noise each step)."""
    model.train(False)
    for p in model.parameters():
        p.requires_grad_(True)

    def run(n_ex: int, steps: int):
        for i in range(n_ex):
            xi = x[i : i + 1].clone()
            for _ in range(steps):
                grads = []
                for _ in range(q):
                    m = copy.deepcopy(model) if delta > 0 else model
                    if delta > 0:
                        with torch.no_grad():
                            for p in m.parameters():
                                p.add_(torch.empty_like(p).uniform_(-delta, delta))
                    xr = xi.detach().requires_grad_(True)
                    loss = F.cross_entropy(m(xr), t[i : i + 1])
                    loss.backward()  # weight gradients too, as a plain training-style script does
                    grads.append(xr.grad)
                xi = (xi - alpha * torch.stack(grads).mean(0).sign()).clamp(0, 1)

    n_ex, steps = 4, 3
    run(1, 1)
    return timed(lambda: run(n_ex, steps)) / (n_ex * steps)


def ours_per_step(model, name: str, n: int, steps: int, **params) -> float:
    method = create_method(name, steps=steps, eta=0.0, **params)
    method.generate(model, n=n, seed=0, progress=False)  # warm-up (DCT matrices, allocator)
    return timed(lambda: method.generate(model, n=n, seed=0, progress=False)) / steps


def art_pgd_per_step(model, x, t, steps: int, alpha: float) -> float | None:
    try:
        from art.attacks.evasion import ProjectedGradientDescentPyTorch
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        return None
    clf = PyTorchClassifier(
        model=model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=model.card.num_classes,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )
    attack = ProjectedGradientDescentPyTorch(
        clf,
        norm="inf",
        eps=1.0,
        eps_step=alpha,
        max_iter=steps,
        targeted=True,
        num_random_init=0,
        batch_size=len(x),
        verbose=False,
    )
    xn, tn = x.numpy(), t.numpy()
    attack.generate(xn, y=tn)
    return timed(lambda: attack.generate(xn, y=tn)) / steps


def bench_model(label: str, model, n: int, steps: int, gm_steps: int, end_to_end: bool) -> dict:
    model.eval()
    c, h, w = model.card.input_shape
    g = torch.Generator().manual_seed(0)
    x = torch.rand((n, c, h, w), generator=g)
    t = torch.randint(0, model.card.num_classes, (n,), generator=g)
    r: dict = {"model": label, "n": n, "params": sum(p.numel() for p in model.parameters())}
    r["bound_cl"] = bound(model, x, t, channels_last=True)
    r["bound_contiguous"] = bound(model, x, t, channels_last=False)
    r["c_step"] = ours_per_step(model, "c", n, steps)
    r["ltrc_step"] = ours_per_step(model, "ltrc", n, steps)
    r["rcgm_step"] = ours_per_step(model, "rcgm", n, gm_steps)
    r["rcgm_vmap_step"] = ours_per_step(model, "rcgm", n, gm_steps, gm="vmap")
    r["naive_c_example_step"] = naive_step_per_example(model, x, t, q=1, delta=0.0, alpha=0.01)
    r["naive_rcgm_example_step"] = naive_step_per_example(model, x, t, q=10, delta=0.01, alpha=0.01)
    r["art_pgd_step"] = art_pgd_per_step(model, x, t, steps, 0.01)
    if end_to_end:
        for name in ("c", "ltrc"):  # RC+GM end to end is q x this; its per-step ratio is measured above
            method = create_method(name)
            r[f"{name}_end_to_end"] = timed(lambda m=method: m.generate(model, n=n, seed=0, progress=False))
    return r


def ratios(r: dict) -> dict:
    b = min(r["bound_cl"], r["bound_contiguous"])
    out = {
        "channels_last_speedup_of_bound": r["bound_contiguous"] / r["bound_cl"],
        "c_step_over_bound": r["c_step"] / b,
        "gm_step_over_q_bound": r["rcgm_step"] / (10 * b),
        "gm_vmap_over_loop": r["rcgm_vmap_step"] / r["rcgm_step"],
        "ltrc_over_c": r["ltrc_step"] / r["c_step"],
        "naive_over_c_per_step_500": r["naive_c_example_step"] * r["n"] / r["c_step"],
        "naive_over_rcgm_per_step": r["naive_rcgm_example_step"] * r["n"] / r["rcgm_step"],
    }
    if r["art_pgd_step"] is not None:
        out["art_pgd_over_c_step"] = r["art_pgd_step"] / r["c_step"]
    for name, naive in (("c", "naive_c_example_step"), ("ltrc", "naive_c_example_step")):
        if f"{name}_end_to_end" in r:
            out[f"naive_500_steps_over_{name}_end_to_end"] = r[naive] * r["n"] * 500 / r[f"{name}_end_to_end"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="Smaller n and fewer steps (a smoke run).")
    ap.add_argument("--out", default="benchmarks/results_generation.json")
    args = ap.parse_args()
    n, steps, gm_steps = (20, 5, 2) if args.quick else (100, 20, 5)
    splits = load_splits("digits:32")
    cnn = train_new("cnn", splits.owner, TrainConfig(epochs=3 if args.quick else 10), seed=0, test=splits.test)
    resnet = create_model("resnet18", num_classes=10, input_shape=(3, 32, 32), seed=0)
    results = [
        bench_model("cnn, digits 32 px (trained)", cnn, n, steps, gm_steps, end_to_end=True),
        bench_model("resnet18, 32 px x 3 ch (random weights)", resnet, n, max(2, steps // 5), 1, end_to_end=False),
    ]
    report = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
        },
        "results": [{**r, "ratios": ratios(r)} for r in results],
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    for r in report["results"]:
        print(f"\n{r['model']} (n={r['n']}, {r['params']:,} parameters)")
        for k, v in r["ratios"].items():
            print(f"  {k:40s} {v:8.2f}")
        for k in (
            "bound_cl",
            "bound_contiguous",
            "c_step",
            "ltrc_step",
            "rcgm_step",
            "rcgm_vmap_step",
            "art_pgd_step",
            "c_end_to_end",
            "ltrc_end_to_end",
            "rcgm_end_to_end",
        ):
            if r.get(k) is not None:
                print(f"  {k:40s} {r[k]:8.4f} s")


if __name__ == "__main__":
    main()
