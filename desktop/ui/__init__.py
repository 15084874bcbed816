"""Qt views, dialogs and item models. Widgets never touch SQL, HTTP or the sync engine: they call desktop
services through the job runner and refresh from what changed."""
