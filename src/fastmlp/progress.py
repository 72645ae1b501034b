"""Training progress: a tqdm bar when tqdm is installed, a plain line per epoch otherwise."""

from __future__ import annotations

import sys


class Progress:
    def __init__(self, total_batches, verbose=1, file=None):
        self.verbose = int(verbose)
        self.file = file or sys.stderr
        self.bar = None
        if self.verbose >= 1:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total_batches, unit="batch", file=self.file, leave=True)

    def update(self, batches, loss):
        if self.bar is not None:
            self.bar.update(batches)
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def epoch_done(self, epoch, summary, seconds):
        if self.verbose < 1:
            return
        text = " ".join(f"{k}={v:.4f}" for k, v in summary.items())
        if self.bar is not None:
            self.bar.set_description(f"epoch {epoch + 1}")
            self.bar.set_postfix_str(text)
        else:
            print(f"epoch {epoch + 1}: {text} ({seconds:.2f} s)", file=self.file, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
