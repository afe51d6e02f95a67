"""Every write to the catalogue, one module per sub-domain. Views, the API, the admin, commands and tasks call these;
nothing else writes rows.

- ``artworks``: storing an upload (checked completely before anything is written), metadata edits, deletes.
- ``classification``: queueing artworks for the workers, classifying them, storing predictions, the sweep.
- ``labels``: the curators' types and their audit trail.
- ``accounts``: the accounts the site needs to start.
- ``imports``: the bulk import's batch-shaped writes (files, rows, label audit trail, predictions per batch).
- ``artwork_types``: the catalogue's types (curators add them; a type in use is never deleted).
- ``training_jobs``: training a new model version in the background (start, cancel, run, activate);
  ``training`` (the training itself, from the catalogue, published with the gate's decision) and
  ``training_gate`` (the gate: pure).
"""
