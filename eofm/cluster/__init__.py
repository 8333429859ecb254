"""Predicting over thousands of scenes on a cluster: which scenes a process takes
(``shards``, ``inputs``), what it did with them (``manifest``), and the merged account of
a whole run with its mosaic (``summary``, ``vrt``).

The scheduler (a Slurm job array, torchrun) starts the processes; eofm only reads the
environment it gives them. Nothing here imports torch.
"""
