"""Lists: the community lists and the clocks.

``community_lists.py`` (list rows and files), ``tracing_clock.py`` (the 24-hour clock and
compliance). The categories they list are the ``categories`` stage's; transfers and risk areas the
``response`` stage's.
"""
