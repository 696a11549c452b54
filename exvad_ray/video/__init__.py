"""exvad_ray.video"""
