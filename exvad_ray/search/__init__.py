"""exvad_ray.search"""
