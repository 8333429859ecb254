"""Decoders: feature maps -> a dense feature map for the segmentation head."""
