#!/usr/bin/env python
"""Kill trials: a process SIGKILLed at random instants while MLP.save writes never costs the
model file that was there.

tests/test_files.py's experiment, many more times. Two models differ in every weight; the
path starts with the old one. Each trial forks a writer that saves the new model and the
old one, alternately, to that path until the parent SIGKILLs it at a random instant (drawn
from 0 to --max-delay seconds after the fork: the writer's start, whole saves, and every
step of one: the temporary file, its writing, fsync, the rename). After each kill:

- the path must load (MLP.load) as the old or the new model, every weight bitwise equal;
  anything else (missing, refused, another model) is an error;
- the writer must have died of the SIGKILL (a save that raised is an error);
- at most one temporary may be there: a killed writer's temporary is removed by the next
  save to the path, so more would mean they accumulate (an error).

At the end a save by this (living) process must leave no temporary behind: the bytes of any
that stay are "bytes lost". The last line is the summary; the exit status is 1 on any error
or byte lost, else 0.

Usage:
    python tools/kill_trials.py                      # 1000 trials in a temporary directory
    python tools/kill_trials.py --trials 200 --seed 3 --dir /mnt/slow-disk/kill-trials
POSIX only (os.fork, SIGKILL).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def two_models(n_features=300):
    """(old, new): the same architecture, different weights (77 KB of float32 each, so
    that a save takes long enough to be killed in the middle of it)."""
    import fastmlp

    def model(seed):
        X = np.random.default_rng(seed).standard_normal((50, n_features)).astype(np.float32)
        return fastmlp.MLP((64,), seed=seed).fit(X, np.arange(50) % 3, epochs=1, verbose=0)

    return model(0), model(1)


def weight_bytes(model):
    """Every weight's dtype, shape and bytes: what 'the same model' means here."""
    return [(a.dtype.str, a.shape, a.tobytes()) for W, b in model.weights for a in (W, b)]


def temporaries(path):
    """The temporary files of saves to path (fastmlp._files names them .<name>.tmp-<pid>-*)."""
    return sorted(path.parent.glob(f".{path.name}.tmp-*"))


def write_until_killed(path, old, new):
    """The writer: save new, then old, again and again. Only the SIGKILL ends it; a save
    that raises makes it exit with status 2, which the parent counts as an error."""
    try:
        while True:
            new.save(path)
            old.save(path)
    except BaseException as exc:  # report anything, then leave at once
        print(f"writer {os.getpid()}: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        os._exit(2)


def run_trials(directory, trials, seed, max_delay, verbose=True):
    """The trials in `directory`; returns (summary line, failed)."""
    import fastmlp

    path = Path(directory) / "model.npz"
    old, new = two_models()
    expected = {"old": weight_bytes(old), "new": weight_bytes(new)}
    assert expected["old"] != expected["new"]
    old.save(path)
    start = time.perf_counter()
    new.save(path)
    old.save(path)
    if verbose:
        print(f"kill trials: {trials} in {directory}, seed {seed}, kills 0-{1000 * max_delay:.0f}"
              f" ms after the fork; one save takes {500 * (time.perf_counter() - start):.1f} ms"
              f" ({path.stat().st_size} bytes)", flush=True)
    rng = random.Random(seed)
    loaded = {"old": 0, "new": 0}
    errors = temporaries_left = 0
    for trial in range(trials):
        pid = os.fork()
        if pid == 0:
            write_until_killed(path, old, new)
        time.sleep(rng.uniform(0.0, max_delay))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        problems = []
        if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
            problems.append(f"the writer exited with status {os.waitstatus_to_exitcode(status)}")
        try:
            found = weight_bytes(fastmlp.MLP.load(path))
            which = next((k for k, v in expected.items() if v == found), None)
            if which is None:
                problems.append("the path loads as neither the old nor the new model")
            else:
                loaded[which] += 1
        except (OSError, ValueError) as exc:
            problems.append(f"the path does not load: {type(exc).__name__}: {exc}")
        left = temporaries(path)
        temporaries_left += len(left)
        if len(left) > 1:  # the writer's first save removes those of the writers before it
            problems.append(f"temporaries accumulate: {[p.name for p in left]}")
        if problems:
            errors += 1
            if verbose:
                print(f"trial {trial}: " + "; ".join(problems), flush=True)
    old.save(path)  # a save by a living process: it removes every killed writer's temporary
    bytes_lost = sum(p.stat().st_size for p in temporaries(path))
    if verbose:
        print(f"loaded the old model after {loaded['old']} kills, the new one after "
              f"{loaded['new']}")
    summary = (f"{trials} trials: {loaded['old'] + loaded['new']} loaded old or new, "
               f"{errors} errors, {bytes_lost} bytes lost, {temporaries_left} temporaries "
               f"left ({'NOT all ' if bytes_lost else ''}cleaned by next save)")
    return summary, errors > 0 or bytes_lost > 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="writers to kill")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill instants")
    parser.add_argument("--dir", default=None,
                        help="directory to save in (default: a temporary one, removed after)")
    parser.add_argument("--max-delay", type=float, default=0.05,
                        help="latest kill, in seconds after the fork")
    args = parser.parse_args(argv)
    if not hasattr(os, "fork"):
        parser.error("needs os.fork (POSIX)")
    if args.dir is None:
        with tempfile.TemporaryDirectory(prefix="kill-trials-") as directory:
            summary, failed = run_trials(directory, args.trials, args.seed, args.max_delay)
    else:
        os.makedirs(args.dir, exist_ok=True)
        summary, failed = run_trials(args.dir, args.trials, args.seed, args.max_delay)
    print(summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
