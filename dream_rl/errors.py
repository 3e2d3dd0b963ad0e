"""Exceptions raised by dream-rl."""


class DREAMError(ValueError):
    """A DREAM-specific error: an invalid configuration, a bad tensor shape or a corrupt state.

    It subclasses ``ValueError`` so code that already guards against bad values catches it too.
    """
