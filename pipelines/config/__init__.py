"""One typed configuration tree, its override engine, and the profiles (recipes as files)."""
