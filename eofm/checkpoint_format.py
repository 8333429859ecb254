"""What eofm adds to Lightning's checkpoint format (light module: no torch)."""

#: The entry of a light checkpoint: the pretrained base (repo, revision, file) whose
#: frozen backbone weights the checkpoint leaves out.
BASE_KEY = "eofm_base"


def light_checkpoint_base(backbone: dict) -> dict | None:
    """The pointer a light checkpoint keeps instead of the frozen backbone weights, from
    ``model.json``'s ``backbone`` record; None when the checkpoint must keep everything.

    The frozen weights may be left out only when they can be had again, bit for bit: the
    base was pretrained (not random) and came from one Hub commit (a 40-hex sha, not a
    branch such as timm's ``main``). This holds for any backbone and adapter mode
    (frozen, LoRA, DoRA): only trainable weights are written, the frozen ones come back
    from the pin (``eofm.lightning_tasks.base.StageTask``).
    """
    import re

    revision = str(backbone.get("revision") or "")
    if not backbone.get("pretrained_loaded") or not re.fullmatch(r"[0-9a-f]{40}", revision):
        return None
    return {k: backbone.get(k) for k in ("name", "repo", "revision", "file")}
