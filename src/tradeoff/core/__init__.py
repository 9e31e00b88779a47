"""The bottom layer: errors, paths, the registry, trials and the protocols of the extension points.

Nothing here imports another part of ``tradeoff``; every other layer may import it.
"""
