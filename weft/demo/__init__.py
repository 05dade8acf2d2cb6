"""``weft demo``: emojivoto (``weft/emojivoto``) meshed on a local cluster, from one command."""
