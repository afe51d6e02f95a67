"""Reading and decoding ahead: two reader threads read and hash the candidates; one query per group asks which hashes
are catalogued already (those are not decoded at all); a pool of decoder threads, one per core, decodes the rest. The
main thread gets the items back in walk order, ready to batch.

Decoding runs up to ``DECODE_AHEAD`` batches ahead, so the decoders never run dry while the main thread waits for the
model and writes a batch; a cap on the bytes read but not yet stored keeps memory bounded whatever the file sizes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TypeAlias

from catalogue.importing.sources import ImportItem, item_read
from catalogue.models import Artwork

DECODE_AHEAD = 4  # batches
READERS = 2  # threads reading and hashing files (I/O: a slow disk or network share)
# Bytes of file data held between reading and storing (files are up to ARTSITE_MAX_UPLOAD_BYTES each).
MAX_BYTES_IN_FLIGHT = 256 * 1024 * 1024

_Entry: TypeAlias = Future[ImportItem] | ImportItem  # an item still in a pool, or one that skips it


class ReadAhead:
    """The reader and decoder pools of one run. Use as a context manager: the pools stop with it (work not yet
    started is cancelled).

    ``decode``: the per-image work (``item_prepare`` with the run's sizes). ``wants_pixels``: asked of an item whose
    hash is catalogued already (``item.existing`` set): whether it needs decoding all the same (an interrupted
    run's pending artwork, to classify now).
    """

    def __init__(
        self,
        *,
        workers: int,
        batch_size: int,
        max_bytes: int,
        decode: Callable[[ImportItem], ImportItem],
        wants_pixels: Callable[[ImportItem], bool],
    ) -> None:
        self.batch_size = batch_size
        self._read = partial(item_read, max_bytes=max_bytes)
        self._decode = decode
        self._wants_pixels = wants_pixels
        # Readers apart from decoders, so that reading ahead never queues behind a batch of decoding.
        self._readers = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="import-read")
        self._decoders = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="import-decode")

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        for pool in (self._readers, self._decoders):
            pool.shutdown(wait=True, cancel_futures=True)

    def items(self, candidates: Iterator[ImportItem]) -> Iterator[ImportItem]:
        """The candidates read and decoded (or marked skipped), in walk order."""
        read_window, decode_window = 2 * self.batch_size, DECODE_AHEAD * self.batch_size
        reads: deque[_Entry] = deque()
        decodes: deque[_Entry] = deque()
        bytes_in_flight = 0
        exhausted = False
        while True:
            while (
                not exhausted
                and len(reads) < read_window
                and (bytes_in_flight < MAX_BYTES_IN_FLIGHT or not reads)
            ):
                item = next(candidates, None)
                if item is None:
                    exhausted = True
                elif item.skip is None:
                    bytes_in_flight += max(0, item.candidate.size)
                    reads.append(self._readers.submit(self._read, item))
                else:
                    reads.append(item)
            if reads and len(decodes) < decode_window:
                group = [_result(reads.popleft()) for _ in range(min(len(reads), self.batch_size))]
                decodes.extend(self._route(group))
            elif decodes:
                item = _result(decodes.popleft())
                bytes_in_flight -= max(0, item.candidate.size)
                yield item
            elif exhausted and not reads:
                return

    def _route(self, group: list[ImportItem]) -> list[_Entry]:
        """One query for the group's hashes: catalogued ones skip the decoder unless they still need pixels."""
        hashes = [item.sha256 for item in group if item.skip is None]
        existing = (
            {
                sha: (pk, status)
                for sha, pk, status in Artwork.objects.filter(sha256__in=hashes).values_list(
                    "sha256", "id", "status"
                )
            }
            if hashes
            else {}
        )
        routed: list[_Entry] = []
        for item in group:
            if item.skip is None and item.sha256 in existing:
                item.existing = existing[item.sha256]
            if item.skip is None and (item.existing is None or self._wants_pixels(item)):
                routed.append(self._decoders.submit(self._decode, item))
            else:
                routed.append(item)
        return routed


def _result(entry: _Entry) -> ImportItem:
    return entry.result() if isinstance(entry, Future) else entry
