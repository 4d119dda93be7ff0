"""The worker's exit codes (docs/CONTRACTS.md). The operator's Job `podFailurePolicy` is built
from them: a command that failed or a job refused by the safety rules ends the Job at once, a
worker stopped from outside (SIGTERM) is retried without counting as a failure."""

from __future__ import annotations

EXIT_OK = 0
EXIT_STEP = 1  # a command failed or timed out: deterministic, retrying would fail again
EXIT_INVALID = 2  # the job is invalid or unsafe: nothing was fetched or run
EXIT_IO = 3  # an input, storage or API failure: may pass on a retry
EXIT_SCRATCH = 4  # the inputs do not fit the pool's scratch space: checked before FFmpeg starts
EXIT_TERMINATED = 143  # SIGTERM: the pod was deleted, evicted or its node drained

# Exit codes after which another attempt cannot help.
FINAL_EXIT_CODES = (EXIT_STEP, EXIT_INVALID, EXIT_SCRATCH)
