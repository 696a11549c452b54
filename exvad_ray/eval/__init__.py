"""exvad_ray.eval"""
