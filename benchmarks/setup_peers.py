"""Create the peers' venv (<repo>/.bench-venv) that the benchmark suite runs every library in.

    python benchmarks/setup_peers.py [--venv PATH] [--force]

Installs, each step on its own so that one failure costs only that peer:

- the base: numpy, psutil, opencv-python-headless (W4's decoder), lmdb (W6: ours and tensorpack's
  LMDBSerializer), matplotlib (the report's charts, ``charts.py``), and this repository's own
  package
  (``pip install -e <repo>``), so that ours runs under the same interpreter and numpy as the peers;
- the peers, pinned: tensorpack 0.11 (only ``tensorpack.dataflow`` is used; it needs no TensorFlow),
  torch 2.13.0 (CPU build only: the install is checked with a dry run first and refused if it would
  bring a CUDA build or nvidia-* packages), grain 0.2.18, spdl 0.8.0, and for W10 (the Ray
  comparison, ``ray_compare.py``) ray[data] 2.60.0.

A peer that fails to install or to import is reported and skipped by ``run.py``. What was installed
is written to ``<venv>/peers.json`` (status, version, error) and ``<venv>/pip-freeze.txt``;
``run.py`` reads the former. The project's own ``.venv`` is never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VENV = REPO / ".bench-venv"
MANIFEST = "peers.json"

# lmdb: W6, both sides (zlib-ng: our lmdb extra's fast CRC-32); matplotlib: the charts of the report (never needed by the project itself)
BASE_PACKAGES = ["numpy", "psutil", "opencv-python-headless", "lmdb", "zlib-ng", "matplotlib"]

# name -> (pip requirements, code that imports it and sets v to its version)
PEERS: dict[str, tuple[list[str], str]] = {
    "tensorpack": (
        ["tensorpack==0.11"],
        "import tensorpack.dataflow, tensorpack; v = tensorpack.__version__",
    ),
    "torch": (
        ["torch==2.13.0"],
        "import torch; v = torch.__version__; assert torch.version.cuda is None, 'CUDA build'",
    ),
    # W9 only (resume cost): torchdata's StatefulDataLoader, on the torch above
    "torchdata": (
        ["torch==2.13.0", "torchdata==0.11.0"],
        "import torchdata.stateful_dataloader, importlib.metadata as m; v = m.version('torchdata')",
    ),
    "grain": (["grain==0.2.18"], "import grain, importlib.metadata as m; v = m.version('grain')"),
    "spdl": (
        ["spdl==0.8.0"],
        "import spdl.pipeline, importlib.metadata as m; v = m.version('spdl')",
    ),
    # W10 only (benchmarks/ray_compare.py): Ray Data's map_batches, and ray for RayMapData
    "raydata": (
        ["ray[data]==2.60.0"],
        "import ray.data, ray; v = ray.__version__",
    ),
}


def venv_python(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def _run(cmd: list[str], timeout: float = 1800) -> tuple[bool, str]:
    """Run a command; return (ok, last lines of its output)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s: {' '.join(cmd)}"
    if proc.returncode == 0:
        return True, (proc.stdout + proc.stderr).strip()
    return False, "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])


def _pip(py: Path, *args: str) -> list[str]:
    return [str(py), "-m", "pip", "--disable-pip-version-check", *args]


def _torch_is_cpu_only(py: Path, reqs: list[str]) -> tuple[bool, str]:
    """Resolve the torch install without doing it; refuse a CUDA build or nvidia-* packages."""
    report = py.parent.parent / "torch-dry-run.json"
    ok, out = _run(
        _pip(py, "install", "--dry-run", "--only-binary=:all:", "--report", str(report), *reqs)
    )
    if not ok:
        return False, out
    data = json.loads(report.read_text())
    report.unlink()
    chosen = {
        item["metadata"]["name"].lower(): item["metadata"]["version"] for item in data["install"]
    }
    bad = sorted(n for n in chosen if n.startswith("nvidia") or n in ("triton", "cuda-toolkit"))
    torch_version = chosen.get("torch", "")
    if bad or (torch_version and "+cpu" not in torch_version):
        return (
            False,
            f"refused: the resolver picked torch {torch_version!r} with {bad} (a CUDA build)",
        )
    return True, ""


def _check_import(py: Path, code: str) -> tuple[bool, str]:
    ok, out = _run([str(py), "-c", code + "; print('VERSION=' + v)"], timeout=300)
    if not ok:
        return False, out
    found = [line[len("VERSION=") :] for line in out.splitlines() if line.startswith("VERSION=")]
    return (True, found[-1]) if found else (False, out)


def setup(
    venv_dir: Path = DEFAULT_VENV, force: bool = False, peers: list[str] | None = None
) -> dict:
    """Create or update the venv; return the manifest it writes."""
    py = venv_python(venv_dir)
    if force or not py.exists():
        print(f"creating {venv_dir}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
    manifest: dict = {"python": str(py), "created": time.strftime("%Y-%m-%d %H:%M:%S"), "peers": {}}

    print("installing the base: " + " ".join(BASE_PACKAGES), flush=True)
    ok, out = _run(_pip(py, "install", "--only-binary=:all:", *BASE_PACKAGES))
    manifest["base"] = {"ok": ok, "error": None if ok else out}
    if not ok:
        print(f"  FAILED: {out}", flush=True)

    print(f"installing ours: pip install -e {REPO}", flush=True)
    ok, out = _run(_pip(py, "install", "-e", str(REPO)))
    if ok:
        ok, out = _check_import(py, "import dataflow; v = dataflow.__version__")
    manifest["peers"]["ours"] = {
        "ok": ok,
        "version": out if ok else None,
        "error": None if ok else out,
    }
    print(f"  {'ok ' + out if ok else 'FAILED: ' + out}", flush=True)

    for name, (reqs, check) in PEERS.items():
        if peers is not None and name not in peers:
            continue
        print(f"installing {name}: {' '.join(reqs)}", flush=True)
        ok, out = True, ""
        if name in ("torch", "torchdata"):
            ok, out = _torch_is_cpu_only(py, reqs)
        if ok:
            ok, out = _run(_pip(py, "install", "--only-binary=:all:", *reqs))
        if ok:
            ok, out = _check_import(py, check)
        manifest["peers"][name] = {
            "ok": ok,
            "version": out if ok else None,
            "error": None if ok else out,
        }
        print(f"  {'ok ' + out if ok else 'FAILED (skipped): ' + out}", flush=True)

    ok, freeze = _run(_pip(py, "freeze", "--all"))
    (venv_dir / "pip-freeze.txt").write_text(freeze + "\n")
    (venv_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_manifest(venv_dir: Path = DEFAULT_VENV) -> dict | None:
    """The manifest of an existing peers' venv, or None if there is none."""
    path = venv_dir / MANIFEST
    if not path.exists() or not venv_python(venv_dir).exists():
        return None
    return json.loads(path.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="where to create it")
    parser.add_argument("--force", action="store_true", help="recreate the venv from scratch")
    parser.add_argument("--peers", help="comma-separated subset of " + ",".join(PEERS))
    args = parser.parse_args(argv)
    if Path(sys.prefix).resolve() == args.venv.resolve():
        parser.error("run this with another interpreter than the venv it creates")
    peers = args.peers.split(",") if args.peers else None
    manifest = setup(args.venv, force=args.force, peers=peers)
    failed = [n for n, p in manifest["peers"].items() if not p["ok"]]
    print(
        "\npeers: "
        + ", ".join(f"{n} {p['version']}" for n, p in manifest["peers"].items() if p["ok"])
    )
    if failed:
        print("skipped (failed to install): " + ", ".join(failed))
    return 0 if manifest["peers"].get("ours", {}).get("ok") else 1


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    sys.exit(main())
