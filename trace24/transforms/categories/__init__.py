"""Categories: who is in which of the four categories (四类人员), and why (``classify.py``)."""
