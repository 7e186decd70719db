"""The order in which training reads cache rows, as a pure function of (seed, position).

Training consumes a stream of row indices: pass after pass over the cache, each
pass a fresh random order. Because the row at global sample position ``p`` is a
pure function of ``(seed, p)``, a resumed run reads exactly the batches an
uninterrupted run would, without storing any sampler state.

Two shuffles:

* ``rows``: each pass is a uniform permutation of all rows (random reads; right
  when the cache fits in the page cache).
* ``blocks``: for caches larger than RAM. Rows are grouped into contiguous blocks
  of ``block_rows``; each pass visits the blocks in random order, ``window_blocks``
  at a time, and the rows of a window are read in one sweep and shuffled
  together. Every row is still read exactly once per pass.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator

import numpy as np

from saesuite.errors import ConfigError

SHUFFLES = ("rows", "blocks")


class SampleOrder:
    """Row indices for global sample positions ``[start, stop)``: ``order.rows(start, stop) -> [stop - start]``."""

    def __init__(self, n: int, seed: int, shuffle: str = "rows", block_rows: int = 4096, window_blocks: int = 64):
        if shuffle not in SHUFFLES:
            raise ConfigError(f"shuffle {shuffle!r} is not known; choose one of {', '.join(SHUFFLES)}")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.block_rows = n if shuffle == "rows" else max(1, block_rows)
        self.n_blocks = -(-n // self.block_rows)
        self.window_blocks = self.n_blocks if shuffle == "rows" else max(1, window_blocks)
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def _blocks(self, pass_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Block order of one pass and the offset of each window within it ``[n_windows + 1]``."""
        order = np.random.default_rng([self.seed, pass_index]).permutation(self.n_blocks)
        sizes = np.minimum(self.block_rows, self.n - order * self.block_rows)  # the last block may be short
        per_window = np.add.reduceat(sizes, np.arange(0, self.n_blocks, self.window_blocks))
        return order, np.concatenate([[0], np.cumsum(per_window)])

    def _window(self, pass_index: int, window: int) -> np.ndarray:
        """Row indices of one window of one pass, in their shuffled order."""
        key = (pass_index, window)
        if key not in self._cache:
            if self.shuffle == "rows":
                rows = np.random.default_rng([self.seed, pass_index]).permutation(self.n)
            else:
                order, _ = self._blocks(pass_index)
                chosen = order[window * self.window_blocks : (window + 1) * self.window_blocks]
                rows = np.concatenate([np.arange(b * self.block_rows, min((b + 1) * self.block_rows, self.n)) for b in chosen])
                rows = np.random.default_rng([self.seed, pass_index, window + 1]).permutation(rows)
            if len(self._cache) > 4:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = rows
        return self._cache[key]

    def rows(self, start: int, stop: int) -> np.ndarray:
        out, pos = [], start
        while pos < stop:
            pass_index, offset = divmod(pos, self.n)
            starts = np.array([0, self.n]) if self.shuffle == "rows" else self._blocks(pass_index)[1]
            window = int(np.searchsorted(starts, offset, side="right") - 1)
            take = min(stop - pos, int(starts[window + 1]) - offset)
            local = offset - int(starts[window])
            out.append(self._window(pass_index, window)[local : local + take])
            pos += take
        return np.concatenate(out) if out else np.empty(0, np.int64)


def prefetch(make: Callable[[int], object], steps: range, depth: int = 2) -> Iterator[object]:
    """Yield ``make(step)`` for each step, computing the next ``depth`` in a background thread."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def worker():
        try:
            for step in steps:
                if stop.is_set():
                    return
                q.put((step, make(step), None))
        except BaseException as err:  # handed to the consumer, raised there
            q.put((None, None, err))

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        for _ in steps:
            _, item, err = q.get()
            if err is not None:
                raise err
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
