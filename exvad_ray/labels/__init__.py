"""Labels in: importers for UCF-Crime, XD-Violence and CSV label files (their formats are parsed by
`exvad_ray.annotations`), matching to an index, and the `exvad labels` / `exvad feedback` commands. The table itself lives in
`exvad_ray.index.labels`."""
