"""Out of core: an MNIST-shaped training set on disk, trained from its memory map
(streamed block by block) and in memory, each in a fresh process.

    python bench/out_of_core.py [--rows 400000] [--epochs 2] [--quick] [--dir DIR]

The training set: the embedded MNIST sample's 8000 training digits tiled to --rows rows
(400,000 rows of 784 float32: 1.25 GB), each copy shifted by up to 2 pixels and with
Gaussian noise (sd 0.05, clipped to [0, 1]), so that no row repeats; written as .npy
files in a temporary directory (after checking the free disk space: fewer rows when it
is short) and deleted at the end. Both fits: MLP((100,), "sigmoid"), Adam, batch 100,
the same seed; test accuracy on the sample's 2000 test digits.

Reported: each process's peak resident memory (ru_maxrss) over the data's size (target
for the streamed fit: under 25%), the same before the fit (imports and the process
itself), the fit's time, and the two test accuracies (target: within 0.5 points).
--quick: 20,000 rows, one epoch, 8 MiB blocks (a check that it runs; the memory ratio
is then dominated by the interpreter and means nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROW_BYTES = 784 * 4
SHIFTS = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]


def write_training_set(folder, rows, seed=0):
    """X.npy (rows, 784) float32 and y.npy (rows,) int64: shifted, noisy MNIST copies."""
    import numpy as np

    from fastmlp.datasets import load_mnist_sample

    X, y = load_mnist_sample()[:2]
    images = X.reshape(-1, 28, 28)
    rng = np.random.default_rng(seed)
    X_out = np.lib.format.open_memmap(folder / "X.npy", mode="w+", dtype=np.float32,
                                      shape=(rows, 784))
    y_out = np.lib.format.open_memmap(folder / "y.npy", mode="w+", dtype=np.int64,
                                      shape=(rows,))
    for start in range(0, rows, len(X)):
        n = min(len(X), rows - start)
        tile = np.empty((n, 28, 28), np.float32)
        shift = rng.integers(len(SHIFTS), size=n)
        for k, (dy, dx) in enumerate(SHIFTS):
            picked = np.flatnonzero(shift == k)
            tile[picked] = np.roll(images[picked], (dy, dx), axis=(1, 2))
        tile += rng.normal(0.0, 0.05, size=tile.shape).astype(np.float32)
        np.clip(tile, 0.0, 1.0, out=tile)
        X_out[start:start + n] = tile.reshape(n, 784)
        y_out[start:start + n] = y[:n]
    X_out.flush()
    y_out.flush()
    del X_out, y_out


def peak_rss():
    """(ru_maxrss, VmHWM) in bytes: the process's peak resident memory as getrusage
    reports it (kept across exec: at least the parent's at the fork, which is why every
    large piece of work runs in a child of a small parent) and as its memory map's high
    water mark."""
    hwm = None
    if os.path.exists("/proc/self/status"):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, hwm


def child(mode, folder, epochs, block_bytes):
    """One fit in this process; prints a JSON line of its figures."""
    if mode == "write":
        write_training_set(folder, epochs)  # epochs: the rows, for this child
        return
    import numpy as np

    from fastmlp import MLP
    from fastmlp.datasets import load_mnist_sample

    if mode == "stream":
        X = np.load(folder / "X.npy", mmap_mode="r")
        y = np.load(folder / "y.npy", mmap_mode="r")
    else:
        X, y = np.load(folder / "X.npy"), np.load(folder / "y.npy")
    before = peak_rss()[0]
    model = MLP((100,), "sigmoid", seed=0)
    start = time.perf_counter()
    model.fit(X, y, epochs=epochs, batch_size=100, optimizer="adam", learning_rate=1e-3,
              verbose=0, block_bytes=block_bytes)
    seconds = time.perf_counter() - start
    maxrss, hwm = peak_rss()
    del X, y
    X_test, y_test = load_mnist_sample()[2:]  # after the fit: its decoding is no fit's peak
    print(json.dumps({
        "mode": mode, "seconds": seconds, "accuracy": model.score(X_test, y_test),
        "maxrss_before_fit": before, "maxrss": maxrss, "vmhwm": hwm,
        "loss": model.history["loss"]}))


def run_child(mode, folder, epochs, block_bytes=0):
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--dir", str(folder), "--epochs",
         str(epochs), "--block-bytes", str(block_bytes)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1]) if mode != "write" else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--block-bytes", type=int, default=64 << 20)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to write the data (default: a temporary directory)")
    parser.add_argument("--child", choices=["write", "stream", "memory"],
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.dir, args.epochs, args.block_bytes)
    if args.quick:
        args.rows, args.epochs, args.block_bytes = 20_000, 1, 8 << 20
    parent = args.dir or Path(tempfile.gettempdir())
    free = shutil.disk_usage(parent).free
    # the data and its labels, with a quarter of the free space left for everyone else
    rows = min(args.rows, int(0.75 * free) // (ROW_BYTES + 8))
    if rows < args.rows:
        print(f"only {free / 2**30:.1f} GiB free in {parent}: {rows} rows, not {args.rows}")
    if rows < 10_000:
        sys.exit("not enough free disk space for a meaningful run")
    load = Path("/proc/loadavg").read_text().split()[:3] if os.path.exists(
        "/proc/loadavg") else ["?"] * 3
    folder = Path(tempfile.mkdtemp(prefix="fastmlp-out-of-core-", dir=parent))
    try:
        start = time.perf_counter()
        run_child("write", folder, rows)
        data_bytes = (folder / "X.npy").stat().st_size + (folder / "y.npy").stat().st_size
        print(f"wrote {rows} rows, {data_bytes / 2**30:.2f} GiB, in "
              f"{time.perf_counter() - start:.0f} s; free disk {free / 2**30:.0f} GiB; "
              f"load {' '.join(load)}; CPUs {os.cpu_count()}")
        results = [run_child(mode, folder, args.epochs, args.block_bytes)
                   for mode in ("stream", "memory")]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    load_after = Path("/proc/loadavg").read_text().split()[:3] if os.path.exists(
        "/proc/loadavg") else ["?"] * 3
    print(f"MLP((100,), 'sigmoid'), Adam lr 1e-3, batch 100, {args.epochs} epoch(s), "
          f"block {args.block_bytes >> 20} MiB; test: 2000 MNIST digits")
    print(f"{'fit':<8} {'ru_maxrss':>10} {'/ data':>8} {'VmHWM':>9} {'before fit':>11} "
          f"{'time':>8} {'accuracy':>9}")
    for r in results:
        hwm = "n/a" if r["vmhwm"] is None else f"{r['vmhwm'] / 2**20:.0f} MiB"
        print(f"{r['mode']:<8} {r['maxrss'] / 2**20:>6.0f} MiB {r['maxrss'] / data_bytes:>8.1%} "
              f"{hwm:>9} {r['maxrss_before_fit'] / 2**20:>7.0f} MiB {r['seconds']:>7.1f}s "
              f"{r['accuracy']:>9.2%}")
    stream, memory = results
    ratio = stream["maxrss"] / data_bytes
    gap = 100 * (stream["accuracy"] - memory["accuracy"])
    print(f"streamed peak RSS / data: {ratio:.1%} (target < 25%: "
          f"{'met' if ratio < 0.25 else 'MISSED'}); accuracy streamed - in memory: "
          f"{gap:+.2f} points (target within 0.5: {'met' if abs(gap) <= 0.5 else 'MISSED'})")
    print(f"load before {' '.join(load)}, after {' '.join(load_after)}")
    return {"data_bytes": data_bytes, "rows": rows, "results": results, "ratio": ratio,
            "gap_points": gap}


if __name__ == "__main__":
    main()
