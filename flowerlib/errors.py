"""The one base class of flowerlib's errors."""


class FlowerlibError(Exception):
    """An error the user can fix; the CLI prints it as one line.

    Each module's errors subclass it, keeping their built-in base too
    (`ConfigError` is also a `ValueError`).
    """
