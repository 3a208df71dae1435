"""chiso: real-time performance assessment of Vietnam's two-tier local government."""
