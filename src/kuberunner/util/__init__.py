"""Small helpers shared by every layer. Imports nothing else from kuberunner."""
