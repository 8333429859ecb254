"""What eofm adds to Lightning's checkpoint format (light module: no torch)."""

#: The entry of a light checkpoint: the pretrained base (repo, revision, file) whose
#: frozen backbone weights the checkpoint leaves out.
BASE_KEY = "eofm_base"
