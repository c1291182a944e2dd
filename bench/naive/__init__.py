"""The naive reaction design the benchmark compares against: one database row per tap.

A tap inserts a row and counts the stream's rows per kind (the counts a broadcast needs), then
publishes them; the same validation, authentication and publishing as the real endpoint.
"""
