"""Pretrained encoders. Each is described by a :class:`~eofm.backbones.manifest.BackboneManifest`."""
