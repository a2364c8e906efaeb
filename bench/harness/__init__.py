"""What every benchmark needs and none should write again: throwaway databases, free ports, local
sinks, the environment of a run and its child processes, and one way to print the figures.

A module of a family (``intake``, ``pipeline``, ``archive``, ``delivery``) holds what the benchmarks of
that family share: their dataset, their sizes and the path they all compare with a floor.
"""
