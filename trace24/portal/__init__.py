"""The web portal (``trace24 portal``): a tool beside the stages that reads the published snapshot and
the lists' files, never the working store. See docs/portal.md."""
