"""Where the work runs and what it reads: the Ray connection, a prepared dataset's layout."""
