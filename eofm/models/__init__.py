"""Models: backbone ► latent ► decoder (``base.LatentModel``), per family; trained models."""
