"""Judging results: compare two runs, and find where a history of runs changed."""
