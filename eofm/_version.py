"""The version of eofm (a leaf module, so that light modules can read it)."""

__version__ = "0.1.0"
