"""The shared layer below `dataprep` and `pipelines`: storage by path or URI (`storage`), files
that appear whole or not at all (`atomic`), strict JSON files (`json_files`) and one clock
(`clock`). It imports nothing of ours."""
