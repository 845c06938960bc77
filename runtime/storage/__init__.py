"""Files the commands write and trust: integrity manifests, locks, guarded replacement."""
