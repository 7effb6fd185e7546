"""The batch converter (`blender -c onemin3d`, scripts/image_to_3d.py): photos in, Blender scenes out.

Importing it imports no bpy; Blender is set up by `main.main()` when it runs.
- arguments: the command line (its import options from core.options), exit codes, UsageError
- inputs:    the inputs (files, folders, patterns) and the run's checked configuration
- console:   progress on stderr, and Ctrl-C
- batch:     the images as jobs of the add-on's scripting API, each result finished on the main thread
- report:    the --json report and the summary line
- logs:      the run's log file, --verbose, and Blender's own output sent to the log
- main:      the entry point: set-up, Blender, exit codes
The scene finishing (grid layout, export, preview render, save) is `..blender.finish`; the
command's registration is `..blender.command`.
"""
