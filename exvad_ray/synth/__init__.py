"""exvad_ray.synth"""
