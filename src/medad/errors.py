"""The one exception type medad raises for problems a user can act on."""


class MedadError(Exception):
    """A user-facing error: the message names the file or field and what to do about it."""
