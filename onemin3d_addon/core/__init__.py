"""bpy-free: the add-on's core (HTTP client, image preparation, results, pipeline, jobs, history).

Nothing in this package imports bpy, so it can be imported and tested without Blender.
"""
