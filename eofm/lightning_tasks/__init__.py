"""LightningModules that turn a model into a trainable task."""
