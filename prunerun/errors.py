"""The one exception type for mistakes a user can fix: the CLI prints its message, exit 2."""


class UserError(Exception):
    """A bad config value, unknown name or missing data; the message says what to do."""
