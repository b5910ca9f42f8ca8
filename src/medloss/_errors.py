"""Errors shared by the CLI and the workflow (no optional dependency here: the CLI reports them
even when the workflow's extras are missing)."""


class UserError(Exception):
    """A problem with the user's input: reported as one line, exit code 2, nothing written."""
