"""Training machinery: the Trainer, run dirs, resumable logs, atomic checkpoints, the latent cache."""
