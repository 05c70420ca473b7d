"""The one exception type a job raises for a failure the user can fix (its message is the whole explanation)."""

from __future__ import annotations


class JobError(Exception):
    """A failure with a message meant for the user (no traceback): the job exits 1 with it."""


class UsageError(JobError):
    """A problem with the command line or its inputs (missing flag, no files to act on): the job exits 2."""
