"""exvad_ray.models"""
