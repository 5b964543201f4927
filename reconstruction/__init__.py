"""Video -> people: 2D pose, tracking, SMPL fitting, importers and captioning."""
