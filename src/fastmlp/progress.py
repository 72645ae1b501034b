"""Training progress: a tqdm bar when tqdm is installed, plain lines otherwise (at most a
few a second: a fit of thousands of tiny epochs prints a handful, not thousands)."""

from __future__ import annotations

import sys
import time

LINE_INTERVAL = 0.5  # seconds between two plain lines; the last epoch's line always shows


class Progress:
    """A fit's progress: a tqdm bar over the batches, or a line per epoch, at most one
    every LINE_INTERVAL seconds (the first epoch's and the last one's always).

    Parameters
    ----------
    total_batches : int
        Batches in the whole fit (the bar's length).
    verbose : int, default 1
        0 shows nothing; 1 or more a tqdm bar when tqdm is installed, else a line per
        epoch.
    file : file-like, optional
        Where to write (default: ``sys.stderr``).
    epochs : int, optional
        The fit's last epoch (from 1), shown as "epoch k/epochs".
    """

    def __init__(self, total_batches, verbose=1, file=None, epochs=None):
        self.verbose = int(verbose)
        self.file = file or sys.stderr
        self.epochs = epochs
        self.bar = None
        self._shown_at = None  # time.monotonic() of the last line
        self._pending = None  # the last epoch's line, not shown yet
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
        """Show epoch `epoch` (from 0)'s `summary` (a callable returning {name: value}:
        not called when nothing is shown), which took `seconds`."""
        if self.verbose < 1:
            return
        text = " ".join(f"{k}={v:.4f}" for k, v in summary().items())
        if self.bar is not None:
            self.bar.set_description(f"epoch {epoch + 1}")
            self.bar.set_postfix_str(text)
        else:
            of = f"/{self.epochs}" if self.epochs else ""
            self._pending = f"epoch {epoch + 1}{of}: {text} ({seconds:.2f} s)"
            now = time.monotonic()
            if self._shown_at is None or now - self._shown_at >= LINE_INTERVAL or \
                    epoch + 1 == self.epochs:
                self._show(now)

    def _show(self, now):
        print(self._pending, file=self.file, flush=True)
        self._pending, self._shown_at = None, now

    def close(self):
        """Close the bar, or show the last epoch's line if it was held back."""
        if self.bar is not None:
            self.bar.close()
        elif self._pending is not None:
            self._show(time.monotonic())
