"""TorchScript archives an attacker lays out by hand: code under names the check would skip,
two members under one name, bytes before the archive, and tiny files that would make the
check itself slow or large. Each is refused by :func:`inspect_torchscript` before anything
loads it, in bounded time and memory."""

import io
import json
import subprocess
import sys
import zipfile

import pytest
import torch

from modelprint.errors import SuspectError
from modelprint.suspects import inspect_torchscript


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))


class _Leak(torch.nn.Module):
    """Reads a file into its answers: what a renamed code member would smuggle past the check."""

    def forward(self, x):
        t = torch.from_file("/etc/passwd", shared=False, size=1, dtype=torch.uint8)
        return x.flatten(1)[:, :10] + t[0].float()


def _members(module: torch.nn.Module) -> list[tuple[str, bytes]]:
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buf)
    with zipfile.ZipFile(buf) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def _archive(path, members, compress=zipfile.ZIP_STORED, prefix=b""):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as z:
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name), data, compress_type=compress)
    path.write_bytes(prefix + buf.getvalue())
    return path


def _code_name(members):
    """The member holding the top module's forward (its path follows the module's import name)."""
    return next(n for n, d in members if n.endswith(".py") and b"class _" in d)


def test_a_real_archive_passes(tmp_path):
    assert inspect_torchscript(_archive(tmp_path / "ok.pt", _members(_Tiny()))) is None


@pytest.mark.parametrize("suffix", [".PY", ".Py", ".py ", ".pyc", ".py/", ".txt"])
def test_code_under_a_name_the_check_would_skip_is_refused(suffix, tmp_path):
    evil = _members(_Leak())
    name = _code_name(evil)
    renamed = [(n[: -len(".py")] + suffix if n == name else n, d) for n, d in evil]
    with pytest.raises(SuspectError, match="not part of a TorchScript archive|refused"):
        inspect_torchscript(_archive(tmp_path / "evil.pt", renamed))


@pytest.mark.parametrize("evil_first", [True, False])
@pytest.mark.parametrize("case", [str, str.upper, str.title])
def test_two_members_under_one_name_or_case_variants_are_refused(evil_first, case, tmp_path):
    good, evil = _members(_Tiny()), _members(_Leak())
    name = _code_name(good)
    evil_code = dict(evil)[_code_name(evil)]
    folder, _, rest = name.partition("/")
    twin = f"{folder}/{case(rest)}" if case is not str.upper else f"{folder}/{rest[:-3].upper()}.py"
    extra = (twin, evil_code)
    members = [extra, *good] if evil_first else [*good, extra]
    with pytest.raises(SuspectError, match="two members named"):
        inspect_torchscript(_archive(tmp_path / "twin.pt", members))


@pytest.mark.parametrize(
    "name",
    ["archive/foo.pkl", "other/data.pkl", "archive/../data.pkl", "archive/code/../x.py", "archive/DATA.PKL",
     "archive/data/0x", "archive/code/__torch__.py.DEBUG_PKL", "data.pkl", "archive/extra/../../x"],
)  # fmt: skip
def test_a_member_outside_torchscripts_layout_is_refused(name, tmp_path):
    members = [*_members(_Tiny()), (name, b"\x80\x02N.")]
    with pytest.raises(SuspectError, match="refused"):
        inspect_torchscript(_archive(tmp_path / "odd.pt", members))


def test_bytes_before_the_archive_are_refused(tmp_path):
    path = _archive(tmp_path / "prefixed.pt", _members(_Tiny()), prefix=b"\0" * 64)
    with pytest.raises(SuspectError, match="before its first member"):
        inspect_torchscript(path)


# Tiny files that unpack to work, checked one after another in a child process: its peak
# memory after each is its own, and the first (a real archive) is the baseline.
PROBE = """
import json, resource, sys, time
from modelprint.errors import SuspectError
from modelprint.suspects import inspect_torchscript
for path in sys.argv[1:]:
    t = time.perf_counter()
    try:
        inspect_torchscript(path); error = None
    except SuspectError as e:
        error = str(e)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"error": error, "s": time.perf_counter() - t, "rss_mb": rss}), flush=True)
"""

BOMBS = {
    # 18 million opcodes (None, pop) in a few dozen KB, then every limit past the size, one by one
    "opcodes": ("data.pkl", b"\x80\x02" + b"N0" * 9_000_000 + b"N."),
    "opcodes-under-size-limit": ("data.pkl", b"\x80\x02" + b"N0" * 3_000_000 + b"N."),
    "memo": ("data.pkl", b"\x80\x04" + b"N\x94" * 3_000_000 + b"."),
    "stack": ("data.pkl", b"\x80\x02" + b"N" * 3_000_000 + b"."),
    "flat-code": ("code", b"def forward(self, x):\n    return [" + b"x," * 2_000_000 + b"]\n"),
    "many-calls": ("code", b"def forward(self, x):\n" + b"    x.add(x)\n" * 600_000),
    "member-just-under": ("code", b"def f(self, x):\n    return [" + b"x," * 500_000 + b"]\n"),
}


def _with(members, name, data):
    target = _code_name(members) if name == "code" else name
    return [(n, data if n.endswith(target) else d) for n, d in members]


@pytest.fixture(scope="module")
def bomb_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bombs")
    paths = [_archive(folder / "real.pt", _members(_Tiny()))]
    # random tensor bytes raise the proportional budget; the absolute ones still hold
    padding = torch.randint(0, 255, (2_000_000,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for bomb, (member, payload) in sorted(BOMBS.items()):
        members = _with(_members(_Tiny()), member, payload)
        members.append((members[0][0].split("/")[0] + "/data/99", padding.numpy().tobytes()))
        paths.append(_archive(folder / f"{bomb}.pt", members, compress=zipfile.ZIP_DEFLATED))
        assert paths[-1].stat().st_size < 3_000_000
    run = subprocess.run([sys.executable, "-c", PROBE, *map(str, paths)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    baseline, *results = [json.loads(line) for line in run.stdout.splitlines()]
    assert baseline["error"] is None, baseline
    return baseline["rss_mb"], dict(zip(sorted(BOMBS), results, strict=True))


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_a_small_file_cannot_make_the_check_slow_or_large(bomb, bomb_results):
    baseline_mb, results = bomb_results
    result = results[bomb]
    assert result["error"] and "refused" in result["error"], result
    assert result["rss_mb"] - baseline_mb < 400, result
    assert result["s"] < 20, result
