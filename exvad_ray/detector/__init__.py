"""exvad_ray.detector"""
