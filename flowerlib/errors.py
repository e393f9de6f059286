"""The one base class of flowerlib's errors."""


class FlowerlibError(Exception):
    """An error the user can fix; the CLI prints it as one line.

    Each module's errors subclass it (and, for compatibility, the built-in
    exception they used to be: `ConfigError` is also a `ValueError`), so
    `except FlowerlibError` catches every problem flowerlib reports to a user.
    """
