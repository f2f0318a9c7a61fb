"""Lists: the four categories, the community lists and the 24-hour clock.

``categories.py`` (who is in which category, and why), ``community_lists.py`` (list rows and
files), ``tracing_clock.py`` (the clock and compliance).
"""
