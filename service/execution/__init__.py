"""Running one attempt of a task: rendered once, run the same in the service and on workers."""
