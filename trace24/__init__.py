"""trace24: agency extracts to four-categories lists within 24 hours."""
