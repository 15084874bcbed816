"""The read-only web portal (``/portal``): server-rendered HTML over the same services as the API."""
