"""Streaming prediction: options, output plans, scene reading and checks, the engine, writers."""
