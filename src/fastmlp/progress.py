"""Training progress: a tqdm bar when tqdm is installed, a plain line per epoch otherwise."""

from __future__ import annotations

import sys


class Progress:
    """A fit's progress: a tqdm bar over the batches, or one line per epoch.

    Parameters
    ----------
    total_batches : int
        Batches in the whole fit (the bar's length).
    verbose : int, default 1
        0 shows nothing; 1 or more a tqdm bar when tqdm is installed, else a line per
        epoch.
    file : file-like, optional
        Where to write (default: ``sys.stderr``).
    """

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
        """Advance the bar by `batches` batches whose mean loss is `loss`."""
        if self.bar is not None:
            self.bar.update(batches)
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def epoch_done(self, epoch, summary, seconds):
        """Show epoch `epoch` (from 0)'s `summary` ({name: value}), which took `seconds`."""
        if self.verbose < 1:
            return
        text = " ".join(f"{k}={v:.4f}" for k, v in summary.items())
        if self.bar is not None:
            self.bar.set_description(f"epoch {epoch + 1}")
            self.bar.set_postfix_str(text)
        else:
            print(f"epoch {epoch + 1}: {text} ({seconds:.2f} s)", file=self.file, flush=True)

    def close(self):
        """Close the bar (a no-op without one)."""
        if self.bar is not None:
            self.bar.close()
