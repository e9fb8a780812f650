"""colorkit's built-in plugins. Each module registers through the public hooks, exactly as a
third-party package does; ``registry.yaml`` lists which modules the core loads."""
