"""exvad_ray.pipeline"""
