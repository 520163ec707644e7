"""What verifying and fingerprinting cost at a user's model size, against the physical bound.

For each model (a CNN at 28 px, a ResNet-18 at 32 px, a ResNet-50 and a ViT of ViT-S/16's size
at 224 px, random weights: cost does not depend on them), in a fresh process each so that the
peak memory is that measurement's own:

* ``bound``: one batched forward + backward (input gradient) of the model on the 100 queries,
  and ``forward``: one batched forward (each the second of two runs, warm), the bounds of
  generation and verification;
* ``verify-file``, ``verify-onnx``, ``verify-torchscript``: opening the suspect and
  :func:`modelprint.verify` of a 100-query fingerprint, cold, as a user runs it once: the
  model as a file, and as ONNX and TorchScript graphs in the contained worker at its default
  limits (4096 MB address space);
* ``c-step``, ``ltrc-step``, ``ipguard-step``: C-, LTRC-examples and IPGuard generation of 100
  queries for 3 steps, per step (LTRC: a freshly noised copy of the model and a DCT high-pass
  every step; IPGuard from 100 random "owner" images);
* ``natural-screen``: the natural family as an owner runs it: 300 held-out candidates drawn from a
  data set on disk (an ``npz`` of random images, 300 test and 40 training images) and labelled
  by the source, screened on 6 reference models (random weights, other seeds): the 3 of the
  selection half see all 300, the 3 of the null half the 100 kept. Its bound is the forwards
  that takes: (4 x 300 + 3 x 100) / 100 = 15 times ``forward``.

Each figure's ratio to its bound is computed from the same run. The 224-pixel architectures
are not modelprint's: they live in ``benchmarks/scale_models.py`` and come in as a user's do,
``scale_models:ResNet50`` trusted by path.

    python benchmarks/bench_scale.py [--models cnn28,resnet18-32,resnet50-224,vits16-224] \\
        [--measures bound,forward,...] [--out benchmarks/results_scale.json]

With ``--measures`` (or a subset of models) the rows measured replace the same rows of an
existing ``--out``; the others stay.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
N = 100
C_STEPS = 3
# name -> (architecture, its arguments, input shape)
MODELS = {
    "cnn28": ("cnn", {"width": 16}, (1, 28, 28)),
    "resnet18-32": ("resnet18", {"width": 64}, (3, 32, 32)),
    "resnet50-224": ("scale_models:ResNet50", {}, (3, 224, 224)),
    "vits16-224": ("scale_models:ViTS16", {}, (3, 224, 224)),
}
MEASURES = (
    *("forward", "bound", "c-step", "ltrc-step", "ipguard-step", "natural-screen"),
    *("verify-file", "verify-torchscript", "verify-onnx"),
)
# natural-screen: candidates, reference models (half select, half fit the null), forwards per 100 queries
CANDIDATES, SCREEN_REFERENCES = 300, 6
SCREEN_FORWARDS = ((1 + SCREEN_REFERENCES // 2) * CANDIDATES + SCREEN_REFERENCES // 2 * N) / N


def _model(name: str, seed: int = 0):  # noqa: ANN202 (a ModelprintModel; imported inside the measuring process)
    import torch

    from modelprint.models import create_model, wrap_model

    arch, args, shape = MODELS[name]
    torch.manual_seed(seed)
    if ":" not in arch:
        return create_model(arch, seed=seed, num_classes=10, input_shape=shape, **args)
    import scale_models

    net = getattr(scale_models, arch.split(":")[1])(num_classes=1000, **args)
    return wrap_model(net.eval(), input_shape=shape, num_classes=1000, arch=arch)


def _random_images(card, n: int):  # noqa: ANN001, ANN202 (a ModelCard, a Dataset)
    """``n`` random images of the model's input shape as an owner's data set."""
    import torch

    from modelprint.data import Dataset

    x = torch.rand(n, *card.input_shape, generator=torch.Generator().manual_seed(1))
    classes = tuple(str(i) for i in range(card.num_classes))
    return Dataset(x, torch.zeros(n, dtype=torch.long), classes, "random")


def _random_npz(card, root: Path) -> str:  # noqa: ANN001 (a ModelCard)
    """A data set spec of random images of the model's input shape, written once under ``root``."""
    import numpy as np

    path = root / f"random-{'x'.join(map(str, card.input_shape))}.npz"
    if not path.exists():
        rng = np.random.default_rng(0)
        arrays = {}
        for part, n in (("train", 40), ("test", CANDIDATES)):
            arrays[f"x_{part}"] = rng.integers(0, 256, (n, *card.input_shape), dtype=np.uint8)
            arrays[f"y_{part}"] = np.arange(n) % 10
        np.savez(path, **arrays)
    return f"npz:{path}"


def measure(name: str, what: str, root: Path) -> dict:
    """One measurement in this process: seconds, and what the model and settings were."""
    import torch

    from modelprint.export import export_model
    from modelprint.fingerprints import Fingerprint, create_method
    from modelprint.models import save_model
    from modelprint.screening import screened_calibration
    from modelprint.suspects import open_suspect
    from modelprint.verify import verify

    model = _model(name)
    x = torch.rand(N, *model.card.input_shape, generator=torch.Generator().manual_seed(0))
    fp_path = root / f"{name}.fp.safetensors"
    if not fp_path.exists():
        create_method("c", steps=0).generate(model, n=N, seed=0, progress=False).save(fp_path)
    fp = Fingerprint.load(fp_path)
    extra: dict = {}
    started = time.perf_counter()
    if what in ("bound", "forward"):
        for _ in range(2):  # the second, warm: the bound is what the hardware does, not first-call set-up
            started = time.perf_counter()
            if what == "bound":  # the input's gradient only, as query generation needs it
                model.requires_grad_(False)
                model(x.clone().requires_grad_(True)).logsumexp(1).sum().backward()
            else:
                with torch.inference_mode():
                    model(x)
    elif what.endswith("-step"):
        data = _random_images(model.card, N) if what == "ipguard-step" else None
        method = create_method(what[: -len("-step")], steps=C_STEPS, alpha=1e-6)
        made = method.generate(model, data, n=N, seed=0, progress=False)
        extra["batch"] = made.meta.get("generation_batch", N)  # chosen from the memory available
    elif what == "natural-screen":
        model.card.dataset = _random_npz(model.card, root)
        refs = [_model(name, seed) for seed in range(1, SCREEN_REFERENCES + 1)]
        started = time.perf_counter()
        candidates = create_method("natural").generate(model, n=CANDIDATES, seed=0, progress=False)
        screened_calibration(candidates, refs, keep=N)
    else:
        kind = what.split("-")[1]
        if kind == "file":
            path = save_model(model, root / name)
        else:
            path = export_model(model, root / f"{name}.{'onnx' if kind == 'onnx' else 'pt'}", kind)
        started = time.perf_counter()  # the suspect as a user holds it: opening it is part of verifying
        suspect = open_suspect(str(path))
        verify(fp, suspect)
        getattr(suspect, "close", lambda: None)()  # a contained worker is waited for: its peak counts below
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    per = seconds / (C_STEPS if what.endswith("-step") else 1)
    return {"seconds": per, "peak_mb": round(max(own, worker) / 1024), **extra}


def _run_one(name: str, what: str, root: Path) -> dict:
    """``measure`` in a fresh process, so its peak resident memory (the larger of the process and
    its contained worker) is that measurement's own."""
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env["MODELPRINT_TRUST_ARCH"] = "scale_models:ResNet50,scale_models:ViTS16"
    env.setdefault("MODELPRINT_QUIET", "1")
    out = subprocess.run(
        [sys.executable, __file__, "--one", name, what, str(root)], capture_output=True, text=True, env=env
    )
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--measures", default=",".join(MEASURES))
    ap.add_argument("--out", default=str(HERE / "results_scale.json"))
    ap.add_argument("--one", nargs=3, metavar=("MODEL", "WHAT", "ROOT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        name, what, root = args.one
        print(json.dumps(measure(name, what, Path(root))))
        return
    import torch

    out = Path(args.out)
    rows = json.loads(out.read_text())["rows"] if out.exists() else []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            for what in [m for m in MEASURES if m in args.measures.split(",")]:
                r = {"model": name, "measure": what, **_run_one(name, what, Path(tmp))}
                rows = [old for old in rows if (old["model"], old["measure"]) != (name, what)] + [r]
                print(json.dumps(r), flush=True)
    rows.sort(key=lambda r: (list(MODELS).index(r["model"]), MEASURES.index(r["measure"])))
    by = {(r["model"], r["measure"]): r.get("seconds") for r in rows}
    for r in rows:
        r.pop("ratio_to_bound", None)
        bound = by.get((r["model"], "bound" if r["measure"].endswith("-step") else "forward"))
        if bound and r["measure"] == "natural-screen":
            bound *= SCREEN_FORWARDS
        if r.get("seconds") and bound and r["measure"] not in ("bound", "forward"):
            r["ratio_to_bound"] = round(r["seconds"] / bound, 2)
    result = {"queries": N, "c_steps": C_STEPS, "rows": rows, "torch": torch.__version__}
    result |= {"threads": torch.get_num_threads(), "machine": platform.machine()}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
