"""Everything that touches bpy; main thread only."""
