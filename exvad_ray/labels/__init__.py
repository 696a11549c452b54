"""Labels in: importers for UCF-Crime, XD-Violence and CSV label files (and VadCLIP's released
features), and the `exvad labels` / `exvad feedback` commands. The table itself lives in
`exvad_ray.index.labels`."""
