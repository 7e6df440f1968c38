"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class CharrnnError(Exception):
    """A problem with the user's input or environment, phrased so the user can fix it."""
