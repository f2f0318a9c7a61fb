"""Response: what follows a category. Beds and transfers (``beds.py``, ``dispatch.py``, ``trips.py``)
and the risk areas to seal (``closures.py``).
"""
