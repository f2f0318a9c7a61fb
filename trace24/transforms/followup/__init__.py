"""Follow-up: what comes back from the community offices. Their answers to the lists
(``answers.py``).
"""
