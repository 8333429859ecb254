"""The workflows behind ``eofm fit``, ``test``, ``predict`` and ``publish``, and loading trained models."""
