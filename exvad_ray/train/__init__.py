"""exvad_ray.train"""
