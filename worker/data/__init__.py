"""The device side of tg.data: the pipelines dataset kernels build and iterators run.

A dataset op's kernel outputs a `base.Dataset` (a tg.variant value that
never leaves its device); an iterator resource (`iterator.py`) pulls blocks
of elements from it. See `base.py` for the block protocol a new source
implements.
"""
