"""``demo`` (the whole flow on digits) and ``list`` (what is registered)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .._io import check_output_path
from ..attacks import ATTACKS
from ..demo import run_demo
from ..fingerprints import METHODS
from ..models import ARCHITECTURES, create_model
from ..models.attachments import attachment_hosts, attachment_names
from ..zoo.spec import builtin_specs
from .common import AsJson, app, parse_shape, print_json

DemoOut = Annotated[Path, typer.Option("--out", help="Folder for models, fingerprints, results.")]
DemoSeed = Annotated[int, typer.Option("--seed", help="Seed of every random choice (default 0: a rerun repeats it).")]


@app.command()
def demo(
    out: DemoOut = Path("modelprint-demo"),
    fast: Annotated[bool, typer.Option("--fast", help="Fewer epochs and models (a smoke run, not the study).")] = False,
    seed: DemoSeed = 0,
) -> None:
    """Train a source and independent models on digits, fingerprint, prune, evaluate."""
    check_output_path(out, "demo", folder=True)
    run_demo(out, fast=fast, seed=seed)


Hosts = Annotated[
    str, typer.Option("--hosts", help="Show every layer of this architecture that can host a white-box mark's module.")
]
ModuleSize = Annotated[int, typer.Option("--k", help="Module size K for --hosts (the grid side a multiple of K).")]


@app.command("list")
def list_registered(
    hosts: Hosts = None,
    input_shape: Annotated[str, typer.Option("--input-shape", help="C,H,W for --hosts.")] = "3,32,32",
    k: ModuleSize = 8,
    as_json: AsJson = False,
) -> None:
    """List registered architectures, fingerprint methods, attacks and built-in zoo specs."""
    registries = {"architectures": ARCHITECTURES, "methods": METHODS, "attacks": ATTACKS}
    if hosts is None and as_json:
        print_json({**{title: reg.names() for title, reg in registries.items()}, "zoo_specs": builtin_specs()})
        return
    if hosts is None:
        for title, reg in registries.items():
            sys.stdout.write(f"{title}: {', '.join(reg.names())}\n")
        sys.stdout.write(f"zoo specs: {', '.join(builtin_specs())}\n")
        sys.stdout.write("white-box mark hosts: modelprint list --hosts ARCH [--input-shape 3,32,32] [--k 8]\n")
        return
    shape = parse_shape(input_shape)
    net = create_model(hosts, num_classes=10, input_shape=shape).net
    layers = {
        layer: channels
        for name in attachment_names()
        for layer, channels in attachment_hosts(name, net, shape, k=k).items()
    }
    if as_json:
        print_json({"hosts": {name: list(channels) for name, channels in layers.items()}})
        return
    if not layers:
        sys.stdout.write(f"{hosts} at {input_shape} has no layer that can host a K={k} module\n")
    for name, (c_in, c_out) in layers.items():
        sys.stdout.write(f"{name}\t{c_in} -> {c_out} channels\n")
