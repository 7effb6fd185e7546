"""bpy-free: the add-on's core (options, wire format and HTTP client, images, relief math, results, pipeline, jobs, history).

Nothing in this package imports bpy, so it can be imported and tested without Blender.
"""
