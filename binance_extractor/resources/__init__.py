"""Package data: the default config and the extractor pod template (symlinks to include/ and k8s_pod_templates/
in the repository; real files in a built wheel), read with importlib.resources so an installed package finds them."""
