"""Trial statuses and the metric trials are ranked by: one home for the words every layer uses.

A trial reports ``hp_status`` (running, completed, diverged, skipped-invalid); the sweep's results
add the three it cannot report itself: early-stopped (the scheduler stopped it), errored (it crashed
past its retries) and interrupted (Ctrl-C stopped the sweep while it ran; ``--resume`` reruns it).
Ray-free, so the results table and the report import it without Ray.
"""

METRIC = "best_val_loss"
"""A trial's score: the lowest validation loss it reached (the tuning playbook's choice)."""

RUNNING = "running"
COMPLETED = "completed"
DIVERGED = "diverged"
SKIPPED = "skipped-invalid"
EARLY_STOPPED = "early-stopped"
ERRORED = "errored"
INTERRUPTED = "interrupted"

REPORTED = (RUNNING, COMPLETED, DIVERGED, SKIPPED)
"""What a trial itself reports as ``hp_status``."""
STATUSES = (COMPLETED, EARLY_STOPPED, DIVERGED, ERRORED, SKIPPED, INTERRUPTED)
"""A finished trial's status in the results table, in the order summaries list them."""
RANKED = (COMPLETED, EARLY_STOPPED)
"""Statuses whose trials compete for best; diverged, errored, skipped and interrupted trials never win."""
FAILED = (DIVERGED, ERRORED)

DISK_FULL = "disk_full"
"""Report key of a trial whose checkpoint found the disk full (its message): the driver stops the sweep."""
