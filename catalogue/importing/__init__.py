"""Bulk import of a folder of images (``manage.py import_artworks``): fast, resumable, exact about what it skipped.

How one run goes (each step names the module that does it):

* ``sources``: the folder is walked in name order (``os.scandir``, streamed); files with an image extension are
  *candidates*, every other file is listed as skipped. A sub-folder named after a type (``painting/``,
  ``Drawings/``...) labels the images below it (``labels``); an optional manifest (``manifest``: CSV or JSON lines)
  gives titles, artists, accession numbers and types.
* ``pipeline``: two reader threads read and hash each candidate; the main thread asks the database, one query per
  batch, which hashes are already catalogued (those are not decoded at all). A pool of decoder threads (one per
  core) decodes and checks the rest with the upload's own checks (``image_check``, JPEGs in draft mode), makes the
  thumbnail, the colour histogram and the model-size input, up to four batches ahead.
* ``run``: per batch of 64, the main thread re-checks the hashes (the authoritative duplicate check) and hands the
  batch to the model thread (``classifiers``), which classifies and embeds it with every serving model version
  (``Classifier.predict_arrays``). Meanwhile the main thread stores the batch before (``store``), through the
  import services (``catalogue.services.imports``): writer threads save image and thumbnail through the storage
  backend under content-addressed names, then one transaction inserts the rows (ready), the label audit trail and
  the predictions. With ``enqueue=True`` the rows are inserted pending and their ids go to the Celery workers once
  committed. Pillow, hashlib, file I/O and TensorFlow release the GIL, so threads keep both cores busy.
* ``tally`` and ``results``: every candidate ends imported, resumed or skipped exactly once; the counts come back as
  an :class:`ImportResult`, the skipped files go to the CSV report as they happen.

Interrupting it is safe at any moment. Files are written before their rows are committed, so a kill in between
leaves files whose rows do not exist yet; their names come from the sha256, so the next run writes the same names
again (replacing the leftovers) and commits the rows. Artworks stored pending (``enqueue``, or while no model was
active) are found by hash by the next run and classified (or queued again). A run over a finished folder therefore
imports nothing, writes nothing and does not even load the model.

Memory stays bounded: images are streamed through a window of a few batches (and a cap on the bytes in flight),
duplicates within the run are found through the database rather than an in-memory set (only ``dry_run``, which
writes no rows, remembers the hashes it has seen), and skipped files go straight to the report file.

The import writes nothing itself: every file and row goes through ``catalogue.services.imports``.
"""

from catalogue.importing.results import ImportEvents, ImportFailed, ImportResult
from catalogue.importing.run import DEFAULT_BATCH_SIZE, artworks_import

__all__ = ["DEFAULT_BATCH_SIZE", "ImportEvents", "ImportFailed", "ImportResult", "artworks_import"]
